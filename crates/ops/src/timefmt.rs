//! Times as operators read them: UTC wall-clock times and "3 min ago".

use time::OffsetDateTime;

/// `2026-01-31 08:00:05Z` for Unix ms; `-` for 0 or an impossible value.
pub fn at(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "-".into())
}

/// "12 s", "5 min", "3 h", "2 d".
pub fn span_ms(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 2 * 3600 {
        format!("{} min", s / 60)
    } else if s < 2 * 86400 {
        format!("{} h", s / 3600)
    } else {
        format!("{} d", s / 86400)
    }
}

/// `2026-01-31 08:00:05Z (5 min ago)`.
pub fn at_ago(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    format!("{} ({} ago)", at(ms), span_ms(now_ms - ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_and_ages_are_rounded() {
        assert_eq!(at(86_400_000 + 5_000), "1970-01-02 00:00:05Z");
        assert_eq!(at(0), "-");
        assert_eq!(at(i64::MAX), "-");
        assert_eq!(span_ms(65_000), "65 s");
        assert_eq!(span_ms(3 * 3600 * 1000), "3 h");
        assert_eq!(at_ago(0, 5), "never");
    }
}
