//! The results table (Markdown, so it can be pasted into BENCHMARKS.md) and its JSON form, with
//! the machine and the moment they were measured on.

use std::process::Command;

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// SPEC/issue item the figure answers (1 = baseline … 8 = memory and start-up).
    pub item: u8,
    /// Stable key for scripts (`ingest.throughput`).
    pub key: String,
    /// What was measured, in words.
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// `value / b`, where the SPEC judges the figure as a ratio to the baseline.
    pub ratio_to_b: Option<f64>,
    /// The SPEC target, in words.
    pub target: Option<String>,
    pub met: Option<bool>,
    pub note: String,
}

/// Where and when the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub nproc: usize,
    pub cpu: String,
    pub ram_gib: f64,
    pub os: String,
    pub kernel: String,
    pub nats_server: String,
    pub git_commit: String,
    pub load_at_start: String,
    pub load_at_end: String,
    pub args: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// Baseline b (publishes/s) every ratio is taken against.
    pub b: Option<f64>,
    /// The order import's call ceiling (orders/s), once measured: import and pipeline are also
    /// judged against it.
    pub ceiling: Option<f64>,
    pub rows: Vec<Row>,
    /// Scenarios that could not finish, with the reason.
    pub failures: Vec<String>,
}

impl Report {
    pub fn new(args: String) -> Report {
        Report {
            machine: Machine::describe(args),
            b: None,
            ceiling: None,
            rows: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Adds a figure; `ratio` divides it by b.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        item: u8,
        key: &str,
        name: &str,
        value: f64,
        unit: &'static str,
        ratio: bool,
        target: Option<(&str, bool)>,
        note: impl Into<String>,
    ) {
        let ratio_to_b = if ratio {
            self.b.filter(|b| *b > 0.0).map(|b| value / b)
        } else {
            None
        };
        let row = Row {
            item,
            key: key.to_owned(),
            name: name.to_owned(),
            value,
            unit,
            ratio_to_b,
            target: target.map(|(t, _)| t.to_owned()),
            met: target.map(|(_, m)| m),
            note: note.into(),
        };
        crate::log(&format!(
            "{} = {}{}",
            row.name,
            format_value(row.value, row.unit),
            row.ratio_to_b
                .map(|r| format!(" ({r:.3} × b)"))
                .unwrap_or_default()
        ));
        self.rows.push(row);
    }

    pub fn finish(&mut self) {
        self.machine.load_at_end = loadavg();
    }

    /// The Markdown table and the context lines.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        s.push_str(&format!(
            "duellsync-bench {} — {} — {} × {} — {:.0} GiB RAM — {} ({}) — nats-server {} — commit {}\n",
            m.args, m.date_utc, m.nproc, m.cpu, m.ram_gib, m.os, m.kernel, m.nats_server, m.git_commit
        ));
        s.push_str(&format!(
            "load average (1/5/15 min) at start {}, at end {}\n\n",
            m.load_at_start, m.load_at_end
        ));
        s.push_str("| # | measurement | value | × b | target | met | note |\n");
        s.push_str("|---|---|---:|---:|---|---|---|\n");
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.item,
                r.name,
                format_value(r.value, r.unit),
                r.ratio_to_b.map(|x| format!("{x:.3}")).unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                },
                r.note
            ));
        }
        for f in &self.failures {
            s.push_str(&format!("\nFAILED: {f}\n"));
        }
        s
    }
}

/// `12 345/s`, `0.153 ms`, `23.4 MB`…
pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "/s" => format!("{}/s", thousands(v.round() as u64)),
        "ms" if v < 10.0 => format!("{v:.3} ms"),
        "ms" => format!("{v:.1} ms"),
        "s" => format!("{v:.2} s"),
        "MB" => format!("{v:.1} MB"),
        "" => thousands(v.round() as u64),
        "×" => format!("{v:.2} ×"),
        u => format!("{v} {u}"),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

impl Machine {
    fn describe(args: String) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let ram_kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        let nats = Command::new(duellsync_test_support::nats_server_bin())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let root = duellsync_test_support::workspace_root();
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(&root)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let mut commit = git(&["rev-parse", "--short", "HEAD"]);
        if !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
            commit.push_str(" (+ uncommitted changes in the tree)");
        }
        Machine {
            date_utc: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu,
            ram_gib: ram_kib / 1024.0 / 1024.0,
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            nats_server: nats,
            git_commit: commit,
            load_at_start: loadavg(),
            load_at_end: String::new(),
            args,
        }
    }
}

/// The 1/5/15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values_for_people() {
        assert_eq!(format_value(123456.4, "/s"), "123 456/s");
        assert_eq!(format_value(0.1534, "ms"), "0.153 ms");
        assert_eq!(format_value(23.44, "MB"), "23.4 MB");
        assert_eq!(format_value(1000.0, ""), "1 000");
    }
}
