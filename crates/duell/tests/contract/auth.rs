//! Login, token expiry and renewal.

use std::time::Duration;

use duellsync_duell::{Action, Error, ProductQuery};
use duellsync_duell_sim::{Fault, SimConfig};

use crate::harness::sim_only;

#[tokio::test]
async fn renews_an_expired_token_transparently_with_exactly_one_extra_login() {
    let Some((t, sim)) = sim_only("renews_an_expired_token", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    t.client.departments().await.expect("first call");
    sim.expire_all_tokens();
    let page = t.client.products(ProductQuery::default()).next_page().await;
    assert!(page.expect("renewed transparently").is_some());
    t.client.departments().await.expect("later call");
    assert_eq!(sim.login_count(), 2);
    assert_eq!(sim.stats().unauthorized, 1);
    assert_eq!(t.client.stats().logins, 2);
}

#[tokio::test]
async fn concurrent_callers_share_one_login() {
    let Some((t, sim)) = sim_only(
        "concurrent_callers_share_one_login",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let calls = (0..8).map(|_| {
        let c = t.client.clone();
        async move { c.departments().await }
    });
    for r in futures::future::join_all(calls).await {
        r.expect("call");
    }
    assert_eq!(sim.login_count(), 1);
    sim.expire_all_tokens();
    let calls = (0..8).map(|_| {
        let c = t.client.clone();
        async move { c.departments().await }
    });
    for r in futures::future::join_all(calls).await {
        r.expect("call after expiry");
    }
    assert_eq!(sim.login_count(), 2, "one re-login for all refused callers");
}

#[tokio::test]
async fn renews_a_token_before_it_expires() {
    let config = SimConfig {
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("renews_a_token_before_it_expires", config, |_| {}).await else {
        return;
    };
    t.client.departments().await.expect("first call");
    // The renewal margin is capped at half the 2 s lifetime: after 1.1 s the client renews on
    // its own, before DUELL refuses anything.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    t.client.departments().await.expect("second call");
    assert_eq!(sim.login_count(), 2);
    assert_eq!(sim.stats().unauthorized, 0);
}

#[tokio::test]
async fn gives_up_after_one_relogin_when_the_token_keeps_being_refused() {
    let Some((t, sim)) = sim_only("gives_up_after_one_relogin", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    sim.fail_next(Some("department/list"), 5, Fault::ExpiredToken);
    let err = t.client.departments().await.expect_err("refused twice");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.action(), Action::FixConfiguration);
    assert_eq!(
        sim.login_count(),
        2,
        "the first login and exactly one re-login"
    );
    assert_eq!(sim.request_count("department/list"), 2);
}

#[tokio::test]
async fn reports_wrong_credentials_as_an_auth_error_without_retrying() {
    let Some((t, sim)) = sim_only("reports_wrong_credentials", SimConfig::default(), |c| {
        c.client_token =
            secrecy::SecretString::from("wrong-token-000000000000000000000".to_string());
    })
    .await
    else {
        return;
    };
    let err = t.client.departments().await.expect_err("bad credentials");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(sim.request_count("getaccesstokens"), 1);
    assert_eq!(sim.request_count("department/list"), 0);
}

#[tokio::test]
async fn issues_jwt_shaped_tokens_with_exp_and_a_string_iat() {
    let Some((_t, sim)) = sim_only("issues_jwt_shaped_tokens", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    let body = reqwest::Client::new()
        .post(format!("{}getaccesstokens", sim.base_url()))
        .form(&[
            ("client_number", sim.client_number()),
            ("client_token", sim.client_token()),
        ])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let token = body["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert!(claims["exp"].is_number());
    assert!(claims["iat"].is_string());
    assert_eq!(claims["username"], sim.client_number());
    let exp: u64 = claims["exp"].to_string().parse().unwrap();
    let iat: u64 = claims["iat"].as_str().unwrap().parse().unwrap();
    assert_eq!(exp - iat, 72 * 3600);
}
