//! The ceiling of the ingest (SPEC §8): a bare HTTP server that stores each request body with one
//! awaited JetStream publish, nothing else. It runs as its own process (`duellsync-bench
//! serve-bare`), like webhook-ingest, so both compete with the load generator the same way.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::post;
use duellsync_bus::{Bus, BusOptions};

/// Route of the bare server.
pub const PATH: &str = "/bare";

/// Serves until killed; prints `listening on <addr>` first.
pub async fn serve(nats: String) -> anyhow::Result<()> {
    let bus = Bus::connect(BusOptions::new(nats, "bench-bare-server")).await?;
    bus.ensure_streams().await?;
    let counter = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        PATH,
        post(move |body: bytes::Bytes| {
            let bus = bus.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let ev = crate::events::raw_order(n, "bench-bare", body.to_vec());
                match tokio::time::timeout(Duration::from_secs(10), bus.publish(&ev)).await {
                    Ok(Ok(_)) => StatusCode::OK,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The bare server as a child process of this binary.
pub struct BareServer {
    child: Child,
    pub addr: std::net::SocketAddr,
}

impl BareServer {
    pub async fn start(nats: &str) -> anyhow::Result<BareServer> {
        let nats = nats.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut child = Command::new(std::env::current_exe()?)
                .args(["serve-bare", "--nats", &nats])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting the bare server")?;
            let stdout = child.stdout.take().context("bare server stdout")?;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line)?;
            let addr = line
                .trim()
                .strip_prefix("listening on ")
                .with_context(|| format!("bare server said {line:?}"))?
                .parse()?;
            Ok(BareServer { child, addr })
        })
        .await?
    }
}

impl BareServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
