//! How syncctl talks to a person or a script: aligned columns, ✔/✖ check lines, colours only
//! on a terminal (and never with `NO_COLOR`), progress bars on stderr, confirmation prompts,
//! and JSON on stdout with `--json`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Output settings of one run.
#[derive(Debug, Clone)]
pub struct Ui {
    /// `--json`: machine output on stdout, nothing decorative.
    pub json: bool,
    color: bool,
    stderr_tty: bool,
    stdin_tty: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
    Bold,
}

impl Ui {
    pub fn new(json: bool) -> Ui {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Ui {
            json,
            color: !json && !no_color && std::io::stdout().is_terminal(),
            stderr_tty: std::io::stderr().is_terminal(),
            stdin_tty: std::io::stdin().is_terminal(),
        }
    }

    pub fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Bad => "31",
            Tone::Warn => "33",
            Tone::Dim => "2",
            Tone::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// Prints a line on stdout (human output only).
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", text.as_ref());
        }
    }

    /// Prints a JSON document on stdout.
    pub fn json_out(&self, value: &serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        let _ = writeln!(out, "{text}");
    }

    /// Prints one JSON value on one line (JSON Lines for streams of records).
    pub fn json_line(&self, value: &serde_json::Value) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }

    /// A note for the person at the terminal, on stderr so that it never mixes with output.
    pub fn note(&self, text: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr().lock(), "{}", text.as_ref());
    }

    /// `✔ label  detail` / `✖ label  reason` with the fix on the next line.
    pub fn check(&self, ok: bool, label: &str, detail: &str, fix: Option<&str>) {
        if self.json {
            return;
        }
        let mark = if ok {
            self.paint(Tone::Good, "✔")
        } else {
            self.paint(Tone::Bad, "✖")
        };
        self.line(format!("{mark} {label:<26} {detail}"));
        if let Some(fix) = fix {
            self.line(format!(
                "  {:<26} {}",
                "",
                self.paint(Tone::Warn, &format!("fix: {fix}"))
            ));
        }
    }

    /// Asks a yes/no question on the terminal. `None` when there is no terminal to ask on.
    pub fn confirm(&self, question: &str) -> Option<bool> {
        if !self.stdin_tty {
            return None;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question} [y/N] ");
        let _ = err.flush();
        drop(err);
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return Some(false);
        }
        Some(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }

    /// A progress bar on stderr, shown only to a person at a terminal.
    pub fn progress(&self, message: &str) -> ProgressBar {
        let bar = ProgressBar::new(0);
        if self.json || !self.stderr_tty {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg:<24} [{bar:30}] {pos}/{len} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A spinner for work of unknown length (reading streams).
    pub fn spinner(&self, message: &str) -> ProgressBar {
        let bar = ProgressBar::new_spinner();
        if self.json || !self.stderr_tty {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// Aligned columns: every column as wide as its widest cell; the last one is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let fmt = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line.trim_end().to_owned()
    };
    let mut out = vec![fmt(headers.to_vec())];
    for r in rows {
        out.push(fmt(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Cuts a text to `max` characters, marking the cut.
pub fn cut(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_on_the_widest_cell() {
        let lines = table(
            &["SEQ", "SERVICE", "REASON"],
            &[
                vec!["1".into(), "catalog-publisher".into(), "x".into()],
                vec!["12".into(), "poller".into(), "y".into()],
            ],
        );
        assert_eq!(lines[0], "SEQ  SERVICE            REASON");
        assert_eq!(lines[1], "1    catalog-publisher  x");
        assert_eq!(lines[2], "12   poller             y");
    }

    #[test]
    fn long_texts_are_cut_on_one_line() {
        assert_eq!(cut("a\nb", 10), "a b");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("äöü", 3), "äöü");
    }
}
