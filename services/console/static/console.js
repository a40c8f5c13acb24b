// The console's only script: live updates over Server-Sent Events. Pages work without it
// (they show the state at load time); with it, the full-sync progress bar moves and the
// status refreshes by itself. No inline script anywhere (the CSP forbids it).
"use strict";

function follow(section) {
  var url = section.getAttribute("data-events");
  if (!url || section.getAttribute("data-finished") === "true" || !window.EventSource) {
    return;
  }
  var source = new EventSource(url);
  source.addEventListener("progress", function (e) {
    var s = JSON.parse(e.data);
    var pct = s.total > 0 ? Math.min(100, Math.floor((s.done * 100) / s.total)) : (s.finished ? 100 : 0);
    var bar = document.getElementById("bar");
    if (bar) { bar.value = pct; bar.textContent = pct + "%"; }
    var text = document.getElementById("run-text");
    if (text) {
      var parts = [pct + "%", s.done + "/" + s.total];
      if (s.rate > 0) { parts.push(s.rate.toFixed(1) + "/s"); }
      if (s.eta_secs !== null && !s.finished) { parts.push(s.eta_secs + " s"); }
      parts.push(s.phase || "");
      text.textContent = parts.join(" — ");
    }
    if (s.finished) {
      source.close();
      // The summary is drawn by the server: show it.
      window.location.reload();
    }
  });
}

function live(box) {
  var url = box.getAttribute("data-live");
  if (!url || !window.EventSource) { return; }
  var source = new EventSource(url);
  source.addEventListener("status", function (e) {
    if (e.data) { box.innerHTML = e.data; }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  var run = document.getElementById("run");
  if (run) { follow(run); }
  document.querySelectorAll("[data-live]").forEach(live);
});
