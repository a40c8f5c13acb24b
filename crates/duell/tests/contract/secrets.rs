//! Credentials and tokens never appear in errors, Debug output or logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duellsync_duell::{ClientConfig, DuellClient, Error, ProductId, ProductQuery, StockQuery};
use duellsync_duell_sim::{Fault, SimConfig};
use secrecy::SecretString;

use crate::harness::{sim_client_config, sim_only};
use crate::order;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test]
async fn never_reveals_credentials_or_tokens_in_errors_debug_output_or_logs() {
    let Some((t, sim)) = sim_only("never_reveals_credentials", SimConfig::default(), |c| {
        c.max_attempts = 2;
        c.request_timeout = Duration::from_millis(300);
        c.pacing.max_wait = Duration::from_millis(50);
    })
    .await
    else {
        return;
    };
    let logs = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut errors: Vec<Error> = Vec::new();
    errors.push(
        ClientConfig::new(
            "::not a url::",
            "012345",
            SecretString::from("x".repeat(32)),
        )
        .expect_err("config"),
    );
    let mut bad = sim_client_config(&sim);
    bad.client_token = SecretString::from("wrong-secret-token-that-is-long-enough".to_string());
    errors.push(
        DuellClient::new(bad)
            .unwrap()
            .departments()
            .await
            .expect_err("auth"),
    );

    let customer = duellsync_duell::CustomerId(sim.customers()[0].customer_id);
    let product = ProductId(sim.product_ids_where(|p| !p.is_deleted)[0]);
    let stock = || StockQuery::department(t.stock_department.clone());

    sim.fail_next(Some("all/product/stock"), 1, Fault::Firewall);
    errors.push(
        t.client
            .stock(stock())
            .next_page()
            .await
            .expect_err("firewall"),
    );
    sim.fail_next(Some("all/product/stock"), 2, Fault::Hang);
    errors.push(
        t.client
            .stock(stock())
            .next_page()
            .await
            .expect_err("unavailable"),
    );
    sim.fail_next(
        Some("all/product/stock"),
        2,
        Fault::EmptyBody { status: 200 },
    );
    errors.push(
        t.client
            .stock(stock())
            .next_page()
            .await
            .expect_err("empty"),
    );
    sim.fail_next(Some("logistics/orders/save"), 1, Fault::HangAfterProcessing);
    errors.push(
        t.client
            .save_customer_orders(&t.order_department, &[order("1", customer, product, 1)])
            .await
            .expect_err("outcome unknown"),
    );
    errors.push(
        t.client
            .save_customer_orders(
                &t.order_department,
                &[order("2", customer, ProductId(0), 1)],
            )
            .await
            .expect_err("rejected"),
    );
    sim.fail_next(Some("product/list"), 1, Fault::MalformedJson);
    errors.push(
        t.client
            .products(ProductQuery::default())
            .next_page()
            .await
            .expect_err("invalid"),
    );
    let mut small = sim_client_config(&sim);
    small.response_limits.page = 1024;
    errors.push(
        DuellClient::new(small)
            .unwrap()
            .products(ProductQuery::default())
            .next_page()
            .await
            .expect_err("too large"),
    );
    // Last: the 429's reset header makes the client hold back every later call for 30 s.
    sim.fail_next(
        Some("all/product/stock"),
        1,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    errors.push(
        t.client
            .stock(stock())
            .next_page()
            .await
            .expect_err("rate limited"),
    );

    let kinds: std::collections::BTreeSet<&str> = errors
        .iter()
        .map(|e| match e {
            Error::Config(_) => "config",
            Error::Auth { .. } => "auth",
            Error::Firewall { .. } => "firewall",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable { .. } => "unavailable",
            Error::EmptyBody { .. } => "empty_body",
            Error::OutcomeUnknown { .. } => "outcome_unknown",
            Error::Rejected { .. } => "rejected",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::ResponseTooLarge { .. } => "response_too_large",
        })
        .collect();
    assert_eq!(kinds.len(), 10, "every variant was produced: {kinds:?}");

    let mut texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .collect();
    texts.push(format!("{:?}", t.client));
    texts.push(format!("{:?}", t.client.config()));
    texts.push(format!("{:?}", t.stock_department));
    texts.push(String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned());
    let secrets = [
        sim.client_token().to_string(),
        "wrong-secret-token-that-is-long-enough".to_string(),
        sim.department_token(1).unwrap(),
        sim.department_token(2).unwrap(),
        // Every JWT starts with the base64 of `{"`.
        "eyJ".to_string(),
    ];
    for text in &texts {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "secret leaked in: {text}");
        }
    }
    let log_text = texts.last().unwrap();
    assert!(log_text.contains("duell_call"), "spans are logged");
    assert!(
        log_text.contains("endpoint=\"all/product/stock\""),
        "{log_text}"
    );
}
