//! Dev-only fixtures: a private `nats-server -js` per test (free port, temp dir, stopped on
//! drop), temporary stores, event builders, and the process sandbox the end-to-end tests use.
//!
//! Tests never use a broker that happens to run on the machine: [`NatsServer::start`] runs the
//! binary that `scripts/ensure-nats-server` provides (installing a pinned one if needed).
#![forbid(unsafe_code)]

pub mod builders;
mod nats;
pub mod sandbox;
pub mod tls;

pub use nats::{nats_server_bin, NatsServer};

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Once;

/// The workspace root (where `Cargo.toml` with `[workspace]` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// A TCP port that was free a moment ago.
/// The value of the `name="csrf"` field in a console page (the form token a test posts back).
pub fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = html.find(marker).expect("a csrf field");
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').expect("a closing quote")].to_owned()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS hands out an ephemeral port")
}

/// A store in a temp dir, deleted on drop.
pub fn temp_store() -> duellsync_store::Store {
    duellsync_store::Store::temporary().expect("a temporary sled database opens")
}

/// Logs to the test output when `RUST_LOG` is set; silent otherwise.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}
