//! Config loading: store files (`StoreSettings` from any TOML text, every validation rule),
//! a service config through `load_layered`, durations, and the environment overlay with any
//! variable names and values.
//!
//! Input: the whole input is the TOML text; every line `NAME=value` (no space in NAME) is also
//! an environment variable, and every line is tried as a duration.
#![no_main]

use duellsync_settings::{duration, env_overlay, load_layered, parse_stores, Needs};
use libfuzzer_sys::fuzz_target;

/// Whether a table names a secret file. Store parsing reads such files, and a fuzzer that finds
/// `{ file = "/dev/stdin" }` would wait forever: those inputs skip the store step.
fn names_a_file(v: &toml::Value) -> bool {
    match v {
        toml::Value::Table(t) => t.iter().any(|(k, v)| k == "file" || names_a_file(v)),
        toml::Value::Array(a) => a.iter().any(names_a_file),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut env: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let _ = duration::parse(line);
        if let Some((name, value)) = line.split_once('=') {
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                env.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    let _ = duration::parse(&text);
    // Secrets named in the store files refer to these.
    env.push(("T".into(), "0123456789abcdef0123456789abcdef".into()));

    let mut overlay = toml::Table::new();
    env_overlay(&mut overlay, "DUELLSYNC_", &env);
    let _ = load_layered::<toml::Table>("fuzz.toml", Some(&text), "DUELLSYNC_", &env);
    if let Ok(config) = load_layered::<duellsync_webhook_ingest::Config>(
        "fuzz.toml",
        Some(&text),
        "DUELLSYNC_",
        &env,
    ) {
        let _ = config.validate();
    }

    let mut stores_overlay = toml::Table::new();
    env_overlay(&mut stores_overlay, "DUELLSYNC_STORES__", &env);
    let file_named = text
        .parse::<toml::Table>()
        .map(|t| names_a_file(&toml::Value::Table(t)))
        .unwrap_or(false)
        || names_a_file(&toml::Value::Table(stores_overlay));
    if !file_named {
        for needs in [Needs::ALL, Needs::RECEIVER] {
            match parse_stores("fuzz.toml", "s1", &text, &env, needs) {
                Ok(stores) => {
                    assert!(!stores.stores.is_empty());
                    for s in stores.stores.values() {
                        let _ = (s.status_map(), s.orders_from_unix(), s.literal_secrets());
                    }
                }
                Err(e) => {
                    assert!(!e.problems.is_empty());
                    let _ = e.to_string();
                }
            }
        }
    }
});
