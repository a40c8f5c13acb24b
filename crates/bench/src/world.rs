//! What every scenario needs: a sandbox (private NATS + service processes), store files for the
//! simulators, readiness and memory of the processes, the captured order delivery, and waits.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::DuellSim;
use duellsync_test_support::sandbox::{Sandbox, StoreFile, SERVICES};
use duellsync_woo_sim::WooSim;

/// The store every scenario uses.
pub const STORE: &str = "s1";
/// Its WooCommerce webhook secret.
pub const WEBHOOK_SECRET: &str = "benchWebhookSecret123";
/// DUELL departments of the simulator.
pub const STOCK_DEPARTMENT: u64 = 1;
pub const ORDER_DEPARTMENT: u64 = 2;

/// A real `order.created` delivery captured from WooCommerce 7.9 (2,591 bytes).
const SAMPLE: &str = include_str!(
    "../../../tests/fixtures/woocommerce-samples/25-webhook-order-created-delivery.json"
);

/// The captured delivery's raw body.
pub fn sample_body() -> String {
    let v: serde_json::Value = serde_json::from_str(SAMPLE).expect("the sample is JSON");
    v["body_text"]
        .as_str()
        .expect("the sample has its body text")
        .to_owned()
}

/// The captured body as the delivery of WooCommerce order `id` (its id, number and links).
pub fn order_body(template: &str, id: u64) -> Vec<u8> {
    template
        .replacen("{\"id\":15,", &format!("{{\"id\":{id},"), 1)
        .replace("\"number\":\"15\"", &format!("\"number\":\"{id}\""))
        .replace("orders\\/15\"", &format!("orders\\/{id}\""))
        .replace("order-pay\\/15\\/", &format!("order-pay\\/{id}\\/"))
        .into_bytes()
}

/// Builds every service binary of the profile this binary was built in (a no-op when up to
/// date), so that no start-up is timed with a build in it.
pub async fn prebuild() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(|| {
        for s in SERVICES {
            duellsync_test_support::sandbox::binary(s);
        }
    })
    .await
    .context("building the service binaries")
}

/// glibc's allocator settings of the image (`ENV GLIBC_TUNABLES` in deploy/Dockerfile): one
/// arena instead of eight per core, and fixed mmap/trim thresholds so freed memory goes back
/// to the system instead of staying with the process (docs/operations.md, "Memory").
pub const GLIBC_TUNABLES: &str =
    "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072";

/// A new sandbox: private nats-server, temp dirs for store files, state and logs.
pub async fn sandbox() -> anyhow::Result<Sandbox> {
    let mut sandbox = tokio::task::spawn_blocking(Sandbox::new)
        .await
        .context("starting nats-server")?;
    // The services run with a cleared environment; they get the image's allocator tunables
    // (or the ones the bench is run with), so what is measured is what is deployed.
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| GLIBC_TUNABLES.into());
    sandbox.common_env.push(("GLIBC_TUNABLES".into(), tunables));
    Ok(sandbox)
}

pub async fn bus(sandbox: &Sandbox, name: &str) -> anyhow::Result<Bus> {
    let bus = Bus::connect(BusOptions::new(sandbox.nats.url(), name)).await?;
    bus.ensure_streams().await?;
    Ok(bus)
}

/// A store file pointing at the simulators (or nowhere, for the ingest alone).
pub fn store_file(woo: Option<&WooSim>, duell: Option<&DuellSim>, settings: &[&str]) -> StoreFile {
    let (woo_url, ck, cs) = match woo {
        Some(w) => {
            let (ck, cs) = w.credentials();
            (w.base_url(), ck, cs)
        }
        None => ("http://127.0.0.1:9/".into(), "ck_x".into(), "cs_x".into()),
    };
    let (duell_url, number, token, stock, order) = match duell {
        Some(d) => (
            d.base_url(),
            d.client_number().to_owned(),
            d.client_token().to_owned(),
            d.department_token(STOCK_DEPARTMENT)
                .expect("the simulator has a stock department"),
            d.department_token(ORDER_DEPARTMENT)
                .expect("the simulator has an order department"),
        ),
        None => (
            "http://127.0.0.1:9/v1/".into(),
            "123456".into(),
            "t".repeat(40),
            "d".repeat(40),
            "o".repeat(40),
        ),
    };
    StoreFile {
        id: STORE.into(),
        woo_url,
        consumer_key: ck,
        consumer_secret: cs,
        webhook_secret: WEBHOOK_SECRET.into(),
        webhook_delivery_url: String::new(),
        duell_url,
        client_number: number,
        client_token: token,
        stock_department: stock,
        order_department: order,
        notice_secret: String::new(),
        settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        sections: String::new(),
    }
}

/// The store file's TOML with `woo.max_concurrency` set.
pub fn with_woo_concurrency(toml: &str, n: usize) -> String {
    toml.replacen("[woo]\n", &format!("[woo]\nmax_concurrency = {n}\n"), 1)
}

/// Starts a service process and returns how long it took from spawning it to `/readyz` 200.
pub async fn start(
    sandbox: &mut Sandbox,
    service: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sandbox.start(service, env);
    wait_ready(sandbox, service, started).await
}

/// Restarts a stopped service with its state and returns its start-up time.
pub async fn restart(sandbox: &mut Sandbox, service: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    sandbox.restart(service);
    wait_ready(sandbox, service, started).await
}

/// SIGTERM, bounded wait for the graceful exit.
pub async fn terminate(sandbox: &mut Sandbox, service: &str) {
    tokio::task::block_in_place(|| sandbox.terminate(service, Duration::from_secs(60)));
}

async fn wait_ready(
    sandbox: &mut Sandbox,
    service: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    let url = format!("{}/readyz", sandbox.admin_url(service));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().as_u16() == 200 {
                return Ok(started.elapsed());
            }
        }
        if !sandbox.is_running(service) {
            bail!(
                "{service} exited before it was ready:\n{}",
                tail(&sandbox.logs(service))
            );
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!(
                "{service} not ready after 180 s:\n{}",
                tail(&sandbox.logs(service))
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Adds the end of a service's log to an error (what went wrong is usually there).
pub fn with_log<T>(r: anyhow::Result<T>, sandbox: &Sandbox, service: &str) -> anyhow::Result<T> {
    r.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n--- end of the {service} log ---\n{}",
            tail(&sandbox.logs(service))
        )
    })
}

/// The last lines of a log, for error messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// CPU time of the whole machine so far, summed over its cores (`/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTime {
    /// User, nice, system, irq and softirq (not idle or I/O wait): every process, the
    /// simulators and the broker included.
    pub busy: std::time::Duration,
    /// Time the hypervisor ran something else while a core wanted to run ours: not work of
    /// this machine, but a run with much of it was slowed by a neighbour.
    pub steal: std::time::Duration,
}

pub fn machine_time() -> Option<MachineTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = |fields: &[usize]| {
        let sum = fields
            .iter()
            .map(|&i| f.get(i).copied().unwrap_or(0))
            .sum::<u64>();
        // USER_HZ is 100 on Linux.
        std::time::Duration::from_millis(sum * 10)
    };
    Some(MachineTime {
        busy: ticks(&[0, 1, 2, 5, 6]),
        steal: ticks(&[7]),
    })
}

/// CPU time (user + system) of each thread of a process so far, by thread id, with its name.
pub fn thread_cpu(pid: u32) -> std::collections::BTreeMap<u32, (String, std::time::Duration)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(n, _)| n.to_owned())
            .unwrap_or_default();
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(tid, (name, std::time::Duration::from_millis(ticks * 10)));
    }
    out
}

/// The thread that used the most CPU between two [`thread_cpu`] readings: its name and its
/// CPU time over the interval.
pub fn busiest_thread(
    before: &std::collections::BTreeMap<u32, (String, std::time::Duration)>,
    after: &std::collections::BTreeMap<u32, (String, std::time::Duration)>,
) -> Option<(String, std::time::Duration)> {
    after
        .iter()
        .map(|(tid, (name, t))| {
            let t0 = before.get(tid).map(|(_, t0)| *t0).unwrap_or_default();
            (name.clone(), t.saturating_sub(t0))
        })
        .max_by_key(|(_, d)| *d)
}

/// Resident and peak resident memory of a process, in MB (`VmRSS`, `VmHWM`).
pub fn memory_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}

/// Polls `check` every `every` until it returns `Some`; fails after `timeout` or when
/// `progress` (if given) has not moved for `stall`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until `count()` reaches `target`, failing when it stops moving for `stall`.
pub async fn wait_count(
    what: &str,
    target: usize,
    stall: Duration,
    mut count: impl FnMut() -> usize,
) -> anyhow::Result<Instant> {
    let mut last = count();
    let mut moved = Instant::now();
    loop {
        let n = count();
        if n >= target {
            return Ok(Instant::now());
        }
        if n != last {
            last = n;
            moved = Instant::now();
        } else if moved.elapsed() > stall {
            bail!("{what}: stuck at {n} of {target} for {stall:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_delivery_becomes_another_order() {
        let t = sample_body();
        let b = String::from_utf8(order_body(&t, 4711)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["id"], 4711);
        assert_eq!(v["number"], "4711");
        assert!(b.contains("orders\\/4711\""), "{b}");
        assert!(!b.contains("orders\\/15\""));
        assert_eq!(v["line_items"][0]["sku"], "LAB-4D5FC1-001");
    }

    #[test]
    fn reads_cpu_time_and_memory_of_a_process() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        let (rss, peak) = memory_mb(me).unwrap();
        assert!(rss > 0.0 && peak >= rss);
    }

    #[test]
    fn finds_the_thread_that_worked_and_the_machine_busy_time() {
        let me = std::process::id();
        let before = thread_cpu(me);
        let tid = current_tid();
        assert!(before.contains_key(&tid), "this thread is listed");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = thread_cpu(me);
        let (_, used) = busiest_thread(&before, &after).unwrap();
        assert!(used >= std::time::Duration::from_millis(20), "{used:?}");
        let m0 = machine_time().unwrap();
        assert!(m0.busy > std::time::Duration::ZERO);
        let m1 = machine_time().unwrap();
        assert!(m1.busy >= m0.busy && m1.steal >= m0.steal);
        // A thread that is gone by the second reading, or new in it, does not break the sum.
        let mut gone = before.clone();
        gone.insert(u32::MAX, ("gone".into(), std::time::Duration::from_secs(9)));
        assert!(busiest_thread(&gone, &after).is_some());
    }

    /// The current thread's id, from `/proc/thread-self`.
    fn current_tid() -> u32 {
        std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok())
            .unwrap()
    }

    #[test]
    fn the_bench_runs_the_services_with_the_images_allocator_settings() {
        let dockerfile = include_str!("../../../deploy/Dockerfile");
        assert!(
            dockerfile.contains(&format!("GLIBC_TUNABLES={GLIBC_TUNABLES}")),
            "deploy/Dockerfile and the bench disagree on GLIBC_TUNABLES"
        );
    }
}
