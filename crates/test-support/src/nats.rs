//! A private nats-server with JetStream for one test.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root};

/// Path of a nats-server >= 2.10: `$NATS_SERVER_BIN`, or whatever `scripts/ensure-nats-server`
/// prints (it installs a pinned release into `.tools/bin` when none is available).
pub fn nats_server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = workspace_root().join("scripts/ensure-nats-server");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        PathBuf::from(path)
    })
    .clone()
}

/// A nats-server child process with JetStream, its own port and storage directory.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    secured: Option<Secured>,
}

/// What a server started with [`NatsServer::start_secured`] hands its clients: a seed file per
/// user of the permission table and the CA of its certificate.
#[derive(Debug)]
struct Secured {
    ca_file: PathBuf,
    /// NATS user (= service for the test's one shard) → file with its NKey seed.
    seeds: BTreeMap<String, PathBuf>,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.port)
            .finish()
    }
}

impl NatsServer {
    /// Starts a server and waits until JetStream is ready.
    pub fn start() -> NatsServer {
        Self::start_with(|_| None)
    }

    /// Starts a server configured as the deployment configures NATS: the accounts, users and
    /// permissions that `deploy/generate.py` renders from `deploy/nats/permissions.toml`, an NKey per user (seeds in [`NatsServer::nkey_file`]), no
    /// anonymous access, and TLS with a certificate from a CA made for this server
    /// ([`NatsServer::ca_file`]). [`NatsServer::url`] is then `tls://…`.
    pub fn start_secured() -> NatsServer {
        Self::start_with(|dir| Some(secure(dir)))
    }

    fn start_with(secure: impl Fn(&Path) -> Option<Secured>) -> NatsServer {
        let mut last = String::new();
        // A port found free can be taken before the server binds it; try a few.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("duellsync-nats-")
                .tempdir()
                .expect("a temp dir for JetStream");
            let secured = secure(dir.path());
            let mut server = NatsServer {
                child: None,
                port: free_port(),
                monitor_port: free_port(),
                dir,
                secured,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("nats-server did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.path().join("nats.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-m"])
            .arg(self.monitor_port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path().join("jetstream"));
        if self.secured.is_some() {
            cmd.arg("-c").arg(self.dir.path().join("nats.conf"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot spawn nats-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("nats-server exited: {status}"));
                }
            }
            if jetstream_healthy(self.monitor_port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err("nats-server not ready in 15 s".into())
    }

    /// `nats://127.0.0.1:<port>`, or `tls://127.0.0.1:<port>` for a secured server.
    pub fn url(&self) -> String {
        let scheme = if self.secured.is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The file with `user`'s NKey seed (secured servers; a user is a `[users.*]` name of the
    /// permission table, e.g. `webhook-ingest`, `syncctl`).
    pub fn nkey_file(&self, user: &str) -> Option<&Path> {
        self.secured.as_ref()?.seeds.get(user).map(PathBuf::as_path)
    }

    /// The CA of a secured server's certificate (PEM).
    pub fn ca_file(&self) -> Option<&Path> {
        self.secured.as_ref().map(|s| s.ca_file.as_path())
    }

    /// The `DUELLSYNC_NATS__*` variables that let `user` connect (URL, seed, CA).
    pub fn env_for(&self, user: &str) -> Vec<(String, String)> {
        let mut env = vec![("DUELLSYNC_NATS__URL".to_owned(), self.url())];
        if let Some(seed) = self.nkey_file(user) {
            env.push((
                "DUELLSYNC_NATS__NKEY_FILE".to_owned(),
                seed.display().to_string(),
            ));
        }
        if let Some(ca) = self.ca_file() {
            env.push((
                "DUELLSYNC_NATS__TLS_CA_FILE".to_owned(),
                ca.display().to_string(),
            ));
        }
        env
    }

    /// The server's log (permission violations are logged there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory holding the JetStream data and the server log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (as a crash would); data stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        panic!("nats-server did not restart on port {}: {last}", self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn jetstream_healthy(monitor_port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", monitor_port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = "GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// Writes the secured server's configuration into `dir`: TLS material from a fresh CA, a key
/// pair per user of `deploy/nats/permissions.toml`, and the accounts `deploy/generate.py`
/// renders for them, so the test runs with the deployment's permissions, not a copy.
fn secure(dir: &Path) -> Secured {
    let table_path = workspace_root().join("deploy/nats/permissions.toml");
    let table: toml::Table = std::fs::read_to_string(&table_path)
        .unwrap_or_else(|e| panic!("{}: {e}", table_path.display()))
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", table_path.display()));
    let users: Vec<String> = table
        .get("users")
        .and_then(|u| u.as_table())
        .expect("the permission table has [users.*]")
        .keys()
        .cloned()
        .collect();
    let keys_dir = dir.join("nkeys");
    std::fs::create_dir_all(&keys_dir).expect("a dir for the seeds");
    let mut seeds = BTreeMap::new();
    let mut args = vec!["deploy/generate.py".to_owned(), "nats-accounts".to_owned()];
    for user in &users {
        let pair = nkeys::KeyPair::new_user();
        let seed_file = keys_dir.join(format!("{user}.nk"));
        std::fs::write(&seed_file, pair.seed().expect("a new key pair has a seed"))
            .expect("the seed is written");
        seeds.insert(user.clone(), seed_file);
        args.push("--user".to_owned());
        args.push(format!("{user}={}", pair.public_key()));
    }
    let out = Command::new("python3")
        .args(&args)
        .current_dir(workspace_root())
        .output()
        .expect("python3 runs deploy/generate.py");
    assert!(
        out.status.success(),
        "deploy/generate.py nats-accounts failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accounts: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("nats-accounts prints JSON");

    let tls = crate::tls::server_material(&["localhost", "127.0.0.1"]);
    let ca_file = dir.join("ca.pem");
    let cert_file = dir.join("server.pem");
    let key_file = dir.join("server.key");
    std::fs::write(&ca_file, &tls.ca_pem).expect("CA written");
    std::fs::write(&cert_file, &tls.cert_pem).expect("certificate written");
    std::fs::write(&key_file, &tls.key_pem).expect("key written");

    // nats.conf accepts JSON values; the generator's output is pasted as is.
    let mut conf = format!(
        "tls {{\n  cert_file: {}\n  key_file: {}\n  timeout: 5\n}}\n",
        serde_json::Value::from(cert_file.display().to_string()),
        serde_json::Value::from(key_file.display().to_string()),
    );
    for (k, v) in accounts.as_object().expect("an object of settings") {
        conf.push_str(&format!("{k}: {v}\n"));
    }
    std::fs::write(dir.join("nats.conf"), conf).expect("nats.conf written");
    Secured { ca_file, seeds }
}
