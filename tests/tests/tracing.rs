//! Issue #7: one trace follows a change across processes (SPEC §6). An OTLP/HTTP receiver in the
//! test collects what every service exports; a web order is one trace from webhook-ingest's
//! request to order-importer's DUELL call, and a DUELL stock change is one trace from
//! change-poller's poll to catalog-publisher's WooCommerce batch write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use duellsync_duell_sim::NewSimProduct;
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_test_support::free_port;
use duellsync_test_support::sandbox::SERVICES;
use duellsync_woo_sim::SimConfig as WooConfig;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use rust_decimal::Decimal;

const WAIT: Duration = Duration::from_secs(60);

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Collected = Arc<Mutex<Vec<Span>>>;

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /v1/traces` as an OTLP/HTTP collector answers it (binary protobuf in and out).
async fn receive(State(spans): State<Collected>, body: Bytes) -> impl IntoResponse {
    let Ok(req) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .map(text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv)))
                        .collect(),
                });
            }
        }
    }
    spans.lock().unwrap_or_else(|e| e.into_inner()).extend(out);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// Starts the receiver on a free port; returns its base URL and what it collects.
async fn otlp_receiver() -> (String, Collected) {
    let spans: Collected = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), spans)
}

fn snapshot(spans: &Collected) -> Vec<Span> {
    spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `span` and its ancestors, nearest first, as far as they were received.
fn lineage<'a>(spans: &'a [Span], span: &'a Span) -> Vec<&'a Span> {
    let mut chain = vec![span];
    let mut current = span;
    while !current.parent_span_id.is_empty() && chain.len() < 64 {
        match spans
            .iter()
            .find(|s| s.trace_id == current.trace_id && s.span_id == current.parent_span_id)
        {
            Some(parent) => {
                chain.push(parent);
                current = parent;
            }
            None => break,
        }
    }
    chain
}

fn has(chain: &[&Span], service: &str, name: impl Fn(&str) -> bool) -> bool {
    chain.iter().any(|s| s.service == service && name(&s.name))
}

/// The order's DUELL save with its ancestry: order-importer's import and consume spans, and
/// at the root webhook-ingest's request that carried the order.
fn order_trace(spans: &[Span], woo_order_id: u64) -> Option<Vec<Span>> {
    let id = woo_order_id.to_string();
    spans
        .iter()
        .filter(|s| {
            s.service == "order-importer"
                && s.name == "duell_call"
                && s.attr("endpoint") == Some("logistics/orders/save")
        })
        .map(|save| lineage(spans, save))
        .find(|chain| {
            has(chain, "order-importer", |n| n == "import_order")
                && has(chain, "order-importer", |n| {
                    n.starts_with("consume woo.s1.order.observed")
                })
                && chain.last().is_some_and(|root| {
                    root.service == "webhook-ingest" && root.attr("order_id") == Some(&id)
                })
        })
        .map(|chain| chain.into_iter().cloned().collect())
}

/// A catalog-publisher batch write to WooCommerce with its ancestry: the publisher's write and
/// its consume span of a stock fact, and at the root change-poller's stock scan.
fn stock_trace(spans: &[Span]) -> Option<Vec<Span>> {
    spans
        .iter()
        .filter(|s| {
            s.service == "catalog-publisher"
                && s.name == "woo.request"
                && s.attr("endpoint") == Some("POST products/batch")
        })
        .map(|write| lineage(spans, write))
        .find(|chain| {
            has(chain, "catalog-publisher", |n| n == "write_products")
                && has(chain, "catalog-publisher", |n| {
                    n.starts_with("consume duell.s1.stock.observed")
                })
                && chain.last().is_some_and(|root| {
                    root.service == "change-poller" && root.name == "stock scan"
                })
        })
        .map(|chain| chain.into_iter().cloned().collect())
}

/// Waits for `find` to succeed on the spans received so far; on timeout, shows what came.
async fn wait_for_trace(
    what: &str,
    spans: &Collected,
    find: impl Fn(&[Span]) -> Option<Vec<Span>>,
) -> Vec<Span> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = snapshot(spans);
        if let Some(t) = find(&all) {
            return t;
        }
        if std::time::Instant::now() > deadline {
            let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
            for s in &all {
                *kinds
                    .entry(format!("{}:{}", s.service, s.name))
                    .or_default() += 1;
            }
            panic!("no {what} among {} spans received: {kinds:#?}", all.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn describe(chain: &[Span]) -> String {
    chain
        .iter()
        .rev()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect::<Vec<_>>()
        .join(" → ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_order_and_a_stock_change_are_each_one_trace_across_services() {
    let (endpoint, spans) = otlp_receiver().await;
    let ingest_port = free_port();
    let mut world = World::with(
        duellsync_duell_sim::SimConfig {
            products: 0,
            ..Default::default()
        },
        WooConfig {
            https: false,
            ..WooConfig::default()
        },
        // The order gap-fill (and product poll) runs only at start: the order below can reach
        // the importer only through its webhook. Stock is scanned often.
        &[
            r#"poll_interval = "10m""#,
            r#"stock_poll_interval = "300ms""#,
        ],
        "",
    )
    .await;
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/s1");
    world.sandbox.write_store("s1", &world.store.to_toml());
    world
        .sandbox
        .common_env
        .push(("DUELLSYNC_TELEMETRY__OTLP_ENDPOINT".into(), endpoint));
    // Two products (one fresh write each, no other work pending in the publisher); the initial
    // sync creates them in WooCommerce.
    let [stocked, ordered] = ["SPOR-1", "SPOR-2"].map(|sku| {
        world.duell.create_product(NewSimProduct {
            product_name: format!("Vare {sku}"),
            product_number: Some(sku.into()),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(20)),
            ..NewSimProduct::default()
        })
    });
    let listen = format!("127.0.0.1:{ingest_port}");
    tokio::task::block_in_place(|| {
        world.sandbox.start(
            "webhook-ingest",
            &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())],
        );
        for s in &SERVICES[1..] {
            world.sandbox.start(s, &[]);
        }
        for s in SERVICES {
            world.sandbox.wait_ready(s, WAIT);
        }
    });
    eventually("the initial sync", WAIT, || async {
        let woo = world.woo_products().await;
        (woo.contains_key(&stocked.product_number) && woo.contains_key(&ordered.product_number))
            .then_some(())
    })
    .await;

    // A stock change in DUELL.
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, stocked.product_id, Decimal::from(77));
    eventually("the stock change in WooCommerce", WAIT, || async {
        let found = world
            .client
            .find_by_sku(&stocked.product_number)
            .await
            .ok()?;
        (found.first()?.stock_quantity == Some(77)).then_some(())
    })
    .await;

    // A web order.
    let order_id = world.place_web_order(
        &ordered.product_number,
        1,
        &[("email", "kari@example.no"), ("phone", "+47 912 34 567")],
    );
    eventually("the order in DUELL", WAIT, || async {
        world
            .duell
            .customer_orders()
            .iter()
            .any(|o| o.reference() == order_id.to_string())
            .then_some(())
    })
    .await;

    // A graceful stop flushes every service's spans (the batch exporter would send them within
    // seconds anyway).
    tokio::task::block_in_place(|| {
        for s in SERVICES {
            let code = world.sandbox.terminate(s, Duration::from_secs(30));
            assert_eq!(
                code,
                Some(0),
                "{s} stops cleanly:\n{}",
                world.sandbox.logs(s)
            );
        }
    });
    let order = wait_for_trace("the order's trace", &spans, |s| order_trace(s, order_id)).await;
    let stock = wait_for_trace("the stock change's trace", &spans, stock_trace).await;
    // One trace id along each chain.
    for chain in [&order, &stock] {
        let ids: BTreeSet<&str> = chain.iter().map(|s| s.trace_id.as_str()).collect();
        assert_eq!(ids.len(), 1, "{}", describe(chain));
    }
    eprintln!("order: {}", describe(&order));
    eprintln!("stock: {}", describe(&stock));
}
