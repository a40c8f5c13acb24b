//! The end-to-end sandbox: one private NATS, the engine's services as real processes (so they
//! can be SIGKILLed and restarted), and a temp dir holding store files, sled state and logs.
//! The simulators run in the test process; the services reach them over HTTP.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root, NatsServer};

/// The sandbox's sealing keys (test keys; the registry seals the test stores' literal
/// secrets with them). webhook-ingest gets only the receiver key, as in production.
pub const SEAL_API_KEY: &str = "YXBpLWtleS1vZi10aGUtdGVzdC1zYW5kYm94LTMyYnk=";
pub const SEAL_RECEIVER_KEY: &str = "cmVjZWl2ZXIta2V5LW9mLXRoZS10ZXN0LXNhbmRib3g=";

/// The service binaries of the workspace.
pub const SERVICES: [&str; 5] = [
    "webhook-ingest",
    "change-poller",
    "catalog-publisher",
    "order-importer",
    "status-writeback",
];

/// Path of a workspace binary in the profile directory the tests were built in; builds it
/// first (a no-op when it is up to date), once per test process.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("the running binary has a path");
    // Tests run from target/<profile>/deps/, binaries (the demo) from target/<profile>/.
    let mut profile_dir = exe
        .parent()
        .expect("the running binary lives in a directory")
        .to_path_buf();
    if profile_dir
        .file_name()
        .map(|n| n == "deps")
        .unwrap_or(false)
    {
        profile_dir.pop();
    }
    let profile = profile_dir
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "debug".into());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) && std::env::var_os("DUELLSYNC_SKIP_BUILD").is_none() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let cargo_profile = if profile == "debug" {
            "dev"
        } else {
            profile.as_str()
        };
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--profile",
                cargo_profile,
                "--bin",
                name,
            ])
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

struct Proc {
    child: Option<Child>,
    admin_port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    starts: u32,
}

/// Everything an end-to-end test runs against.
pub struct Sandbox {
    pub nats: NatsServer,
    dir: tempfile::TempDir,
    procs: BTreeMap<String, Proc>,
    /// Environment every service gets (e.g. an OTLP endpoint).
    pub common_env: Vec<(String, String)>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Self::with_nats(NatsServer::start())
    }

    /// A sandbox whose NATS is configured as the deployment's ([`NatsServer::start_secured`]):
    /// every service connects over TLS with its own credentials and the deployment's
    /// permissions.
    pub fn secured() -> Sandbox {
        Self::with_nats(NatsServer::start_secured())
    }

    fn with_nats(nats: NatsServer) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("duellsync-e2e-")
            .tempdir()
            .expect("a temp dir for the sandbox");
        std::fs::create_dir_all(dir.path().join("stores")).expect("stores dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        Sandbox {
            nats,
            dir,
            procs: BTreeMap::new(),
            common_env: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stores_path(&self) -> PathBuf {
        self.dir.path().join("stores")
    }

    /// Writes (or replaces) `stores/<id>.toml` and applies it to the store registry on the
    /// sandbox's NATS with `syncctl store apply` (the GitOps path): running services pick the
    /// change up by themselves. Panics when the registry refuses the settings.
    pub fn write_store(&self, id: &str, toml: &str) {
        if let Err(e) = self.try_write_store(id, toml) {
            panic!("store {id} refused by the registry:\n{e}");
        }
    }

    /// Like [`Sandbox::write_store`], returning the registry's refusal (syncctl's output).
    pub fn try_write_store(&self, id: &str, toml: &str) -> Result<String, String> {
        let path = self.stores_path().join(format!("{id}.toml"));
        std::fs::write(&path, toml).expect("store file is writable");
        self.syncctl(&[
            "store",
            "apply",
            "-f",
            &path.display().to_string(),
            "--as",
            "sandbox",
        ])
    }

    /// Removes a store from the registry (services stop serving it).
    pub fn delete_store(&self, id: &str) {
        let _ = std::fs::remove_file(self.stores_path().join(format!("{id}.toml")));
        if let Err(e) = self.syncctl(&["store", "delete", id, "--yes", "--as", "sandbox"]) {
            panic!("store {id} not deleted:\n{e}");
        }
    }

    /// Runs syncctl against the sandbox's NATS (with syncctl's own credentials on a secured
    /// one) and the sealing keys; its output, or the output of a failed run as the error.
    pub fn syncctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(binary("syncctl"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .envs(self.nats.env_for("syncctl"))
            .env("DUELLSYNC_SEAL__API_KEY", SEAL_API_KEY)
            .env("DUELLSYNC_SEAL__RECEIVER_KEY", SEAL_RECEIVER_KEY);
        for (k, v) in &self.common_env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("syncctl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Starts `service` with the sandbox's environment plus `env`.
    pub fn start(&mut self, service: &str, env: &[(&str, &str)]) -> &mut Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let admin_port = free_port();
        let log = self.dir.path().join("logs").join(format!("{service}.log"));
        self.procs.insert(
            service.to_owned(),
            Proc {
                child: None,
                admin_port,
                env,
                log,
                starts: 0,
            },
        );
        self.spawn(service);
        self
    }

    fn spawn(&mut self, service: &str) {
        let state_dir = self.dir.path().join("state").join(service);
        let nats_env = self.nats.env_for(service);
        let common = self.common_env.clone();
        let p = self.procs.get_mut(service).expect("service was started");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .expect("log file");
        let mut cmd = Command::new(binary(service));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(nats_env)
            .env("DUELLSYNC_SEAL__RECEIVER_KEY", SEAL_RECEIVER_KEY)
            .env("DUELLSYNC_STATE_DIR", state_dir)
            .env(
                "DUELLSYNC_ADMIN__LISTEN",
                format!("127.0.0.1:{}", p.admin_port),
            )
            .env("DUELLSYNC_TELEMETRY__LOG_FORMAT", "json")
            .env(
                "DUELLSYNC_TELEMETRY__LOG_FILTER",
                std::env::var("DUELLSYNC_E2E_LOG").unwrap_or_else(|_| "info".into()),
            );
        if service != "webhook-ingest" {
            cmd.env("DUELLSYNC_SEAL__API_KEY", SEAL_API_KEY);
        }
        for (k, v) in common.iter().chain(p.env.iter()) {
            cmd.env(k, v);
        }
        let stderr = log.try_clone().expect("log file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {service}: {e}"));
        p.child = Some(child);
        p.starts += 1;
    }

    /// Waits until the service answers 200 on `/readyz`.
    pub fn wait_ready(&mut self, service: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let port = self.procs[service].admin_port;
            if http_status(port, "/readyz") == Some(200) {
                return;
            }
            if let Some(p) = self.procs.get_mut(service) {
                if let Some(child) = p.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "{service} exited ({status}) before becoming ready:\n{}",
                            self.logs(service)
                        );
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{service} not ready within {timeout:?}:\n{}",
                    self.logs(service)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts every service and waits until all are ready.
    pub fn start_all(&mut self, env: &[(&str, &str)]) {
        for s in SERVICES {
            self.start(s, env);
        }
        for s in SERVICES {
            self.wait_ready(s, Duration::from_secs(60));
        }
    }

    pub fn admin_url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.procs[service].admin_port)
    }

    pub fn pid(&self, service: &str) -> Option<u32> {
        self.procs.get(service)?.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self, service: &str) -> bool {
        match self.procs.get_mut(service).and_then(|p| p.child.as_mut()) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: a crash at whatever point the service is.
    pub fn kill(&mut self, service: &str) {
        if let Some(p) = self.procs.get_mut(service) {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// SIGTERM and wait for a graceful exit (bounded); returns the exit code.
    pub fn terminate(&mut self, service: &str, timeout: Duration) -> Option<i32> {
        let p = self.procs.get_mut(service)?;
        let mut child = p.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a stopped or killed service again with the same state dir and environment.
    pub fn restart(&mut self, service: &str) {
        self.kill(service);
        self.spawn(service);
    }

    /// How often a service has been started.
    pub fn starts(&self, service: &str) -> u32 {
        self.procs.get(service).map(|p| p.starts).unwrap_or(0)
    }

    pub fn logs(&self, service: &str) -> String {
        self.procs
            .get(service)
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }

    /// Every service's log, concatenated (secret scans, debugging).
    pub fn all_logs(&self) -> String {
        self.procs
            .keys()
            .map(|s| format!("==== {s} ====\n{}", self.logs(s)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fetches `/metrics` of a service.
    pub fn metrics(&self, service: &str) -> String {
        http_get(self.procs[service].admin_port, "/metrics").unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() || std::env::var_os("DUELLSYNC_KEEP_SANDBOX").is_some() {
            let kept = self.dir.path().to_path_buf();
            eprintln!("sandbox logs kept in {}", kept.display());
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a replacement temp dir"),
            );
            let _ = dir.keep();
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let resp = http_get(port, path)?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

/// A store file for the simulators, with literal (test) secrets.
#[derive(Debug, Clone)]
pub struct StoreFile {
    pub id: String,
    pub woo_url: String,
    pub consumer_key: String,
    pub consumer_secret: String,
    pub webhook_secret: String,
    pub webhook_delivery_url: String,
    pub duell_url: String,
    pub client_number: String,
    pub client_token: String,
    pub stock_department: String,
    pub order_department: String,
    pub notice_secret: String,
    /// Extra top-level settings, TOML lines (`sync_prices = false`).
    pub settings: Vec<String>,
    /// Extra sections, TOML text appended at the end (`[stock]` …).
    pub sections: String,
}

impl StoreFile {
    pub fn to_toml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
        let mut t = String::new();
        t.push_str(&format!("id = {}\n", q(&self.id)));
        for line in &self.settings {
            t.push_str(line);
            t.push('\n');
        }
        t.push_str("\n[woo]\n");
        t.push_str(&format!("url = {}\n", q(&self.woo_url)));
        // The simulators serve plain http: a lab shop, which the store file must say.
        if self.woo_url.starts_with("http://") {
            t.push_str("allow_insecure_http = true\n");
        }
        t.push_str(&format!("consumer_key = {}\n", q(&self.consumer_key)));
        t.push_str(&format!("consumer_secret = {}\n", q(&self.consumer_secret)));
        t.push_str(&format!("webhook_secret = {}\n", q(&self.webhook_secret)));
        if !self.webhook_delivery_url.is_empty() {
            t.push_str(&format!(
                "webhook_delivery_url = {}\n",
                q(&self.webhook_delivery_url)
            ));
        }
        t.push_str("\n[duell]\n");
        t.push_str(&format!("url = {}\n", q(&self.duell_url)));
        t.push_str(&format!("client_number = {}\n", q(&self.client_number)));
        t.push_str(&format!("client_token = {}\n", q(&self.client_token)));
        t.push_str(&format!(
            "stock_department = {}\n",
            q(&self.stock_department)
        ));
        t.push_str(&format!(
            "order_department = {}\n",
            q(&self.order_department)
        ));
        if !self.notice_secret.is_empty() {
            t.push_str(&format!("notice_secret = {}\n", q(&self.notice_secret)));
        }
        t.push('\n');
        t.push_str(&self.sections);
        t
    }

    /// Every secret in the file (for "never in logs" checks).
    pub fn secrets(&self) -> Vec<String> {
        [
            &self.consumer_secret,
            &self.webhook_secret,
            &self.client_token,
            &self.stock_department,
            &self.order_department,
            &self.notice_secret,
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| (*s).clone())
        .collect()
    }
}
