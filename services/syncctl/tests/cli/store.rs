use crate::helpers::syncctl;
use duellsync_test_support::NatsServer;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn file(extra: &str) -> String {
    format!(
        r#"{extra}
[woo]
url = "https://shop.test"
consumer_key = {{ env = "ACME_CK" }}
consumer_secret = "cs_plain_1"
[duell]
client_number = "012345"
client_token = "{TOKEN}"
stock_department = {{ env = "ACME_SD" }}
order_department = {{ env = "ACME_OD" }}
"#
    )
}

#[tokio::test]
async fn apply_shows_the_diff_refuses_invalid_settings_and_keeps_an_audited_history() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    let key = syncctl(&[], &["store", "keygen"])
        .await
        .stdout
        .trim()
        .to_owned();
    assert_eq!(key.len(), 44, "a 32-byte key in base64");
    let env = vec![
        ("DUELLSYNC_NATS__URL", nats.url()),
        ("DUELLSYNC_SEAL__API_KEY", key.clone()),
        ("DUELLSYNC_SEAL__RECEIVER_KEY", key),
    ];
    std::fs::write(&path, file("")).unwrap();
    let p = path.to_str().unwrap();

    let run = syncctl(
        &env,
        &["store", "apply", "-f", p, "--dry-run", "--as", "alice"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("+ store acme (new)"), "{run}");
    assert!(run.stdout.contains("woo.consumer_key"), "{run}");
    assert!(
        !run.stdout.contains("cs_plain_1") && !run.stdout.contains(TOKEN),
        "{run}"
    );
    let run = syncctl(&env, &["--json", "store", "list"]).await;
    assert_eq!(
        run.json()["stores"].as_array().unwrap().len(),
        0,
        "dry run stored nothing"
    );

    let run = syncctl(&env, &["store", "apply", "-f", p, "--as", "alice"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("stored (revision"), "{run}");
    let run = syncctl(&env, &["store", "apply", "-f", p]).await;
    assert!(run.stdout.contains("= store acme: unchanged"), "{run}");

    // The refused combination: nothing stored, key and fix named, exit 2.
    std::fs::write(&path, file("deduct_stock = true")).unwrap();
    let run = syncctl(&env, &["store", "apply", "-f", p]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("deduct_stock"), "{run}");
    assert!(
        run.stdout.contains("create_customer_order = false"),
        "{run}"
    );

    std::fs::write(&path, file("sync_prices = false")).unwrap();
    let run = syncctl(&env, &["store", "apply", "-f", p, "--as", "bob"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stdout.contains("sync_prices") && run.stdout.contains("→ false"),
        "{run}"
    );

    let run = syncctl(&env, &["store", "get", "acme"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("sync_prices = false"), "{run}");
    assert!(run.stdout.contains("<sealed: set, changed"), "{run}");
    assert!(run.stdout.contains("by alice"), "{run}");
    assert!(
        run.stdout.contains("{ env = \"ACME_CK\" }") || run.stdout.contains("env = \"ACME_CK\""),
        "{run}"
    );
    assert!(
        !run.stdout.contains("cs_plain_1") && !run.stdout.contains(TOKEN),
        "{run}"
    );

    let run = syncctl(&env, &["store", "delete", "acme", "--yes", "--as", "carol"]).await;
    assert_eq!(run.code, 0, "{run}");
    let run = syncctl(&env, &["--json", "store", "history", "acme"]).await;
    let v = run.json();
    let who: Vec<(&str, &str)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["action"].as_str().unwrap(), c["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        vec![("create", "alice"), ("update", "bob"), ("delete", "carol")]
    );
    assert!(!run.stdout.contains("cs_plain_1"), "{run}");

    // Without the sealing key a plain secret cannot be stored.
    let no_keys = vec![("DUELLSYNC_NATS__URL", nats.url())];
    std::fs::write(&path, file("")).unwrap();
    let run = syncctl(&no_keys, &["store", "apply", "-f", p]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.contains("sealing key"), "{run}");
}
