//! Text comparisons that survive WooCommerce's HTML escaping and whitespace handling.

/// Undoes the entity escaping WordPress applies to titles (`&amp;` and friends).
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#8217;", "'")
        .replace("&#8211;", "-")
}

fn normalise(s: &str) -> String {
    unescape(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Equal after unescaping entities and collapsing whitespace.
pub fn same_text(a: &str, b: &str) -> bool {
    a == b || normalise(a) == normalise(b)
}

/// "A > B > C" → ["A", "B", "C"], empty segments dropped.
pub fn category_path(path: &str) -> Vec<String> {
    path.split('>')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A variant's option: its name with the parent's name taken out ("T-skjorte Rød M" under
/// "T-skjorte" → "Rød M"); the whole name when it does not contain the parent's.
pub fn variant_option(parent_name: &str, variant_name: &str) -> String {
    let p = parent_name.trim();
    let v = variant_name.trim();
    let stripped = if !p.is_empty() && v.starts_with(p) {
        v[p.len()..].trim_matches(|c: char| c.is_whitespace() || c == '-' || c == ',')
    } else if !p.is_empty() && v.contains(p) {
        return v
            .replacen(p, "", 1)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
    } else {
        v
    };
    if stripped.is_empty() {
        v.to_owned()
    } else {
        stripped.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_titles_equal_their_source() {
        assert!(same_text("Kaffe & Te", "Kaffe &amp; Te"));
        assert!(same_text("  A   b ", "A b"));
        assert!(!same_text("A", "B"));
    }

    #[test]
    fn category_paths_split_on_the_arrow() {
        assert_eq!(
            category_path("Klær > Herre > Jakker"),
            vec!["Klær", "Herre", "Jakker"]
        );
        assert_eq!(category_path(" > A >> B "), vec!["A", "B"]);
        assert!(category_path("").is_empty());
    }

    #[test]
    fn variant_options_drop_the_parent_name() {
        assert_eq!(variant_option("T-skjorte", "T-skjorte Rød M"), "Rød M");
        assert_eq!(variant_option("T-skjorte", "T-skjorte - Blå"), "Blå");
        assert_eq!(variant_option("Genser", "Rød Genser XL"), "Rød XL");
        assert_eq!(variant_option("Genser", "Lue"), "Lue");
        assert_eq!(variant_option("Genser", "Genser"), "Genser");
    }
}
