//! `syncctl config check`: good files pass, every problem is named with its key, value and fix,
//! exit code 2 on problems.

use std::path::{Path, PathBuf};

use crate::helpers::syncctl;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn store_toml(extra: &str) -> String {
    format!(
        r#"{extra}
[woo]
url = "https://shop.example.com"
consumer_key = "ck_literal"
consumer_secret = {{ env = "CS" }}
webhook_secret = {{ env = "WS" }}
[duell]
client_number = "012345"
client_token = {{ env = "DT" }}
stock_department = {{ env = "SD" }}
order_department = {{ env = "OD" }}
"#
    )
}

fn env(stores: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DUELLSYNC_STORES_PATH", stores.display().to_string()),
        ("CS", "cs_secret".into()),
        ("WS", "hookSecret1".into()),
        ("DT", TOKEN.into()),
        ("SD", TOKEN.into()),
        ("OD", TOKEN.into()),
    ]
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn a_valid_store_passes_with_a_warning_about_literal_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores");
    std::fs::create_dir(&stores).unwrap();
    write(&stores, "s1.toml", &store_toml(""));
    let run = syncctl(&env(&stores), &["config", "check"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("valid: s1"), "{run}");
    assert!(
        run.stdout
            .contains("woo.consumer_key is written in the file"),
        "{run}"
    );

    let run = syncctl(&env(&stores), &["--json", "config", "check"]).await;
    let v = run.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["sections"][0]["stores"][0], "s1");
}

#[tokio::test]
async fn an_unknown_key_a_bad_value_and_a_forbidden_combination_are_each_named() {
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores");
    std::fs::create_dir(&stores).unwrap();

    write(&stores, "s1.toml", &store_toml("sync_pricez = true"));
    let run = syncctl(&env(&stores), &["config", "check"]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("sync_pricez"), "{run}");

    write(
        &stores,
        "s1.toml",
        &store_toml("hidden_product_action = \"delete\""),
    );
    let run = syncctl(&env(&stores), &["config", "check"]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("delete"), "{run}");

    write(&stores, "s1.toml", &store_toml("deduct_stock = true"));
    let run = syncctl(&env(&stores), &["--json", "config", "check"]).await;
    assert_eq!(run.code, 2, "{run}");
    let v = run.json();
    assert_eq!(v["ok"], false);
    let problems = v["sections"][0]["problems"].as_array().unwrap();
    let p = problems
        .iter()
        .find(|p| p["key"].as_str().unwrap().ends_with("deduct_stock"))
        .unwrap_or_else(|| panic!("deduct_stock is named: {v}"));
    assert!(
        p["fix"]
            .as_str()
            .unwrap()
            .contains("create_customer_order = false"),
        "{p}"
    );

    write(
        &stores,
        "s1.toml",
        &store_toml("").replace("012345", "12345"),
    );
    let run = syncctl(&env(&stores), &["--json", "config", "check"]).await;
    let v = run.json();
    let p = &v["sections"][0]["problems"][0];
    assert!(
        p["key"].as_str().unwrap().ends_with("duell.client_number"),
        "{v}"
    );
    assert_eq!(p["value"], "12345");
    assert!(p["fix"].as_str().unwrap().contains("API-oppsett"), "{p}");
}

#[tokio::test]
async fn a_service_config_is_checked_with_the_services_own_rules_and_its_sealing_keys() {
    // syncctl runs the service binaries (`--check-config`), found next to itself.
    for service in ["change-poller", "order-importer"] {
        duellsync_test_support::sandbox::binary(service);
    }
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores");
    std::fs::create_dir(&stores).unwrap();
    write(&stores, "s1.toml", &store_toml(""));
    let good = write(
        dir.path(),
        "poller.toml",
        "shard = \"shard-a\"\nstate_dir = \"/tmp/x\"\n[nats]\nurl = \"nats://nats:4222\"\n",
    );
    let mut e = env(&stores);
    e.retain(|(k, _)| *k != "DUELLSYNC_STORES_PATH");
    let run = syncctl(
        &e,
        &[
            "config",
            "check",
            "--service",
            "change-poller",
            "--config",
            good.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("service change-poller"), "{run}");
    assert!(run.stdout.contains("valid"), "{run}");

    // A sealing key that is not 32 bytes of base64 is named with the fix.
    e.push(("DUELLSYNC_SEAL__API_KEY", "too-short".into()));
    let run = syncctl(
        &e,
        &[
            "config",
            "check",
            "--service",
            "change-poller",
            "--config",
            good.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("seal.api_key"), "{run}");
    assert!(run.stdout.contains("syncctl store keygen"), "{run}");
    e.pop();

    let bad = write(
        dir.path(),
        "importer.toml",
        "shard = \"a\"\n[natz]\nurl = \"x\"\n",
    );
    let run = syncctl(
        &e,
        &[
            "config",
            "check",
            "--service",
            "order-importer",
            "--config",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("natz"), "{run}");

    let run = syncctl(
        &e,
        &["config", "check", "--service", "nope", "--config", "x"],
    )
    .await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("unknown service"), "{run}");
    let run = syncctl(&e, &["config", "check"]).await;
    assert_eq!(run.code, 2, "{run}");
}
