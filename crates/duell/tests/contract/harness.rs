//! Where the contract suite runs: against duell-sim started in-process (default), or against a
//! real DUELL account when `DUELL_URL`, `DUELL_CLIENT_NUMBER` and `DUELL_CLIENT_TOKEN` are set
//! (read-only unless `DUELL_CONTRACT_WRITE=1`).

use std::time::Duration;

use duellsync_duell::{ClientConfig, DepartmentToken, DuellClient, PacingConfig};
use duellsync_duell_sim::{DuellSim, SimConfig};
use secrecy::SecretString;

/// A system under test.
pub struct Target {
    pub client: DuellClient,
    /// The simulator, when running against it.
    pub sim: Option<DuellSim>,
    pub stock_department: DepartmentToken,
    pub order_department: DepartmentToken,
    /// Whether tests may write (always against the simulator).
    pub write: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True when the suite runs against a real DUELL account.
pub fn real() -> bool {
    env("DUELL_URL").is_some()
}

/// Client settings for the simulator: quick backoff and short timeouts keep tests fast.
pub fn sim_client_config(sim: &DuellSim) -> ClientConfig {
    let mut c = ClientConfig::new(
        &sim.base_url(),
        sim.client_number(),
        SecretString::from(sim.client_token().to_string()),
    )
    .expect("valid sim config");
    c.request_timeout = Duration::from_secs(5);
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(40);
    c.pacing = PacingConfig {
        reset_margin: Duration::from_millis(50),
        max_wait: Duration::from_secs(10),
        default_retry_after: Duration::from_millis(200),
        ..PacingConfig::default()
    };
    c
}

pub fn sim_target(sim: DuellSim, tweak: impl FnOnce(&mut ClientConfig)) -> Target {
    let mut config = sim_client_config(&sim);
    tweak(&mut config);
    Target {
        client: DuellClient::new(config).expect("client"),
        stock_department: DepartmentToken::new(sim.department_token(1).expect("department 1")),
        order_department: DepartmentToken::new(sim.department_token(2).expect("department 2")),
        sim: Some(sim),
        write: true,
    }
}

/// The default target: a real account when configured, else a fresh simulator.
pub async fn target() -> Target {
    if real() {
        let url = env("DUELL_URL").unwrap_or_default();
        let number =
            env("DUELL_CLIENT_NUMBER").expect("DUELL_CLIENT_NUMBER must be set with DUELL_URL");
        let token =
            env("DUELL_CLIENT_TOKEN").expect("DUELL_CLIENT_TOKEN must be set with DUELL_URL");
        let config =
            ClientConfig::new(&url, number, SecretString::from(token)).expect("valid DUELL_URL");
        return Target {
            client: DuellClient::new(config).expect("client"),
            sim: None,
            stock_department: DepartmentToken::new(
                env("DUELL_STOCK_DEPARTMENT")
                    .expect("DUELL_STOCK_DEPARTMENT must be set with DUELL_URL"),
            ),
            order_department: DepartmentToken::new(
                env("DUELL_ORDER_DEPARTMENT")
                    .expect("DUELL_ORDER_DEPARTMENT must be set with DUELL_URL"),
            ),
            write: env("DUELL_CONTRACT_WRITE").as_deref() == Some("1"),
        };
    }
    sim_target(start_sim(SimConfig::default()).await, |_| {})
}

pub async fn start_sim(config: SimConfig) -> DuellSim {
    DuellSim::start(config).await.expect("sim starts")
}

/// A simulator-only target, or `None` (with a printed note) against a real account.
pub async fn sim_only(
    test: &str,
    config: SimConfig,
    tweak: impl FnOnce(&mut ClientConfig),
) -> Option<(Target, DuellSim)> {
    if real() {
        println!("skipped {test}: simulator-only test (faults/control API), DUELL_URL is set");
        return None;
    }
    let sim = start_sim(config).await;
    Some((sim_target(sim.clone(), tweak), sim))
}

/// Skips a writing test against a real account unless writes are allowed.
pub fn may_write(t: &Target, test: &str) -> bool {
    if !t.write {
        println!("skipped {test}: writes to a real account need DUELL_CONTRACT_WRITE=1");
    }
    t.write
}
