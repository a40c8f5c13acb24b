//! defaults → file → `DUELLSYNC_` environment (with `__` nesting) → typed config.

use serde::de::DeserializeOwned;

use crate::ConfigError;

/// Overlays environment variables on a TOML table: `PREFIX` + `A__B__C=value` sets key `a.b.c`.
/// Values that parse as TOML scalars or arrays (`true`, `5`, `["a"]`) keep their type; anything
/// else is a string.
pub fn env_overlay(root: &mut toml::Table, prefix: &str, env: &[(String, String)]) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let path: Vec<String> = rest
            .split("__")
            .filter(|p| !p.is_empty())
            .map(|p| p.to_ascii_lowercase())
            .collect();
        if path.is_empty() {
            continue;
        }
        let leaf = parse_value(value);
        let mut table = &mut *root;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                table.insert(key.clone(), leaf.clone());
            } else {
                let entry = table
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                table = entry.as_table_mut().expect("just made a table");
            }
        }
    }
}

fn parse_value(v: &str) -> toml::Value {
    let doc = format!("v = {v}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.to_owned())),
        Err(_) => toml::Value::String(v.to_owned()),
    }
}

/// Loads a typed config from an optional TOML text and the environment. `T` should use
/// `#[serde(default, deny_unknown_fields)]` so that defaults apply and typos are errors.
pub fn load_layered<T: DeserializeOwned>(
    file_name: &str,
    file_text: Option<&str>,
    prefix: &str,
    env: &[(String, String)],
) -> Result<T, ConfigError> {
    let mut table = match file_text {
        Some(text) => text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::one(file_name, one_line(&e.to_string())))?,
        None => toml::Table::new(),
    };
    env_overlay(&mut table, prefix, env);
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::one(file_name, one_line(&e.to_string())))
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        nats_url: String,
        replicas: u32,
        admin: Admin,
    }
    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Admin {
        listen: String,
        enabled: bool,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Cfg {
                nats_url: "nats://127.0.0.1:4222".into(),
                replicas: 1,
                admin: Admin::default(),
            }
        }
    }
    impl Default for Admin {
        fn default() -> Self {
            Admin {
                listen: "0.0.0.0:9000".into(),
                enabled: true,
            }
        }
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let env = vec![
            ("DUELLSYNC_ADMIN__ENABLED".to_owned(), "false".to_owned()),
            ("DUELLSYNC_REPLICAS".to_owned(), "3".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let cfg: Cfg = load_layered(
            "c.toml",
            Some("nats_url = \"nats://n:4222\""),
            "DUELLSYNC_",
            &env,
        )
        .unwrap();
        assert_eq!(cfg.nats_url, "nats://n:4222");
        assert_eq!(cfg.replicas, 3);
        assert!(!cfg.admin.enabled);
        assert_eq!(cfg.admin.listen, "0.0.0.0:9000");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err =
            load_layered::<Cfg>("c.toml", Some("nats_ulr = \"x\""), "DUELLSYNC_", &[]).unwrap_err();
        assert!(err.to_string().contains("nats_ulr"), "{err}");
    }

    #[test]
    fn broken_toml_is_a_clear_error() {
        let err = load_layered::<Cfg>("c.toml", Some("nats_url = "), "P_", &[]).unwrap_err();
        assert!(err.to_string().starts_with("invalid configuration:"));
        assert!(err.to_string().contains("c.toml"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_environment_overlays_without_panicking(
            env in prop::collection::vec(("(P_)?[A-Za-z_]{0,6}(__[A-Za-z_]{0,6}){0,3}|\\PC{0,12}", "\\PC{0,16}|\\[[0-9, ]{0,8}\\]|\\{ a = 1 \\}"), 0..8),
            text in "(\\PC{0,40}\n?){0,4}",
        ) {
            let mut table = toml::Table::new();
            env_overlay(&mut table, "P_", &env);
            let _ = load_layered::<toml::Table>("c.toml", Some(&text), "P_", &env);
            let _ = load_layered::<crate::service::NatsSection>("c.toml", Some(&text), "P_", &env);
        }

        #[test]
        fn a_nested_variable_sets_its_key(a in "[A-Z]{1,6}", b in "[A-Z]{1,6}", n in any::<i32>()) {
            let mut table = toml::Table::new();
            env_overlay(&mut table, "P_", &[(format!("P_{a}__{b}"), n.to_string())]);
            let got = table[&a.to_ascii_lowercase()][&b.to_ascii_lowercase()].as_integer();
            prop_assert_eq!(got, Some(i64::from(n)));
        }
    }
}
