//! How the bus reaches NATS: the options a service gives (URL, credentials, TLS), the rule that
//! keeps credentials and events off the network in clear, URLs safe to print, and the server's
//! permission refusals turned into errors instead of silent timeouts.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use duellsync_settings::service::NatsSection;
use tokio::sync::Notify;

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// One URL or several separated by commas. Never printed as given: see [`redact_url`].
    pub url: String,
    /// Client name shown by the NATS server (service name). Also names the inbox prefix
    /// (`_INBOX_<name>`), which the server's permissions let only this service read.
    pub name: String,
    /// Stream replicas: 1 for a single server, 3 in a production cluster.
    pub replicas: usize,
    /// How long a publish keeps retrying while the broker is unreachable before it gives up.
    pub publish_deadline: Duration,
    /// How long `connect` waits for the first connection.
    pub connect_timeout: Duration,
    /// File with the NKey seed the service authenticates with.
    pub nkey_file: Option<PathBuf>,
    /// JWT credentials file (decentralized auth).
    pub credentials_file: Option<PathBuf>,
    /// CA the server's certificate must chain to; requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Accept an unencrypted connection to a host that is not this machine.
    pub allow_plaintext: bool,
}

impl BusOptions {
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        BusOptions {
            url: url.into(),
            name: name.into(),
            replicas: 1,
            publish_deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            nkey_file: None,
            credentials_file: None,
            tls_ca_file: None,
            tls_client: None,
            allow_plaintext: false,
        }
    }

    /// The options a service's `[nats]` settings describe.
    pub fn from_settings(nats: &NatsSection, name: impl Into<String>) -> Self {
        let mut o = BusOptions::new(nats.url.clone(), name);
        o.replicas = nats.replicas;
        o.nkey_file = nats.nkey_file.clone();
        o.credentials_file = nats.credentials_file.clone();
        o.tls_ca_file = nats.tls_ca_file.clone();
        o.tls_client = match (&nats.tls_cert_file, &nats.tls_key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        o.allow_plaintext = nats.allow_plaintext;
        o
    }

    /// Whether TLS is asked for (a `tls://` URL or a CA or client certificate to use).
    pub fn wants_tls(&self) -> bool {
        self.tls_ca_file.is_some()
            || self.tls_client.is_some()
            || self.servers().any(|s| s.scheme == "tls")
    }

    fn servers(&self) -> impl Iterator<Item = Server> + '_ {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Server::parse)
    }

    /// Every problem with these options, each naming the `nats.*` setting and the fix.
    /// [`crate::Bus::connect`] refuses options with problems; services also report them with
    /// their other configuration problems.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let servers: Vec<Server> = self.servers().collect();
        if servers.is_empty() {
            out.push((
                "nats.url",
                "is empty; write e.g. tls://nats.nats.svc:4222".into(),
            ));
        }
        for s in &servers {
            if !matches!(s.scheme.as_str(), "nats" | "tls") || s.host.is_empty() {
                out.push((
                    "nats.url",
                    format!(
                        "`{}` is not a NATS address; write nats://host:4222 or tls://host:4222",
                        s.redacted
                    ),
                ));
            } else if !self.wants_tls() && !self.allow_plaintext && !s.is_loopback() {
                out.push((
                    "nats.url",
                    format!(
                        "`{}` would carry credentials and events unencrypted to another machine; \
                         use tls://… with nats.tls_ca_file (the CA of the server's certificate), \
                         or set nats.allow_plaintext = true for a lab",
                        s.redacted
                    ),
                ));
            }
        }
        if self.nkey_file.is_some() && self.credentials_file.is_some() {
            out.push((
                "nats.nkey_file",
                "and nats.credentials_file are both set; a service authenticates one way: keep the one the server expects".into(),
            ));
        }
        out
    }
}

/// A URL with any password or token replaced by `***`, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|s| Server::parse(s.trim()).redacted)
        .collect::<Vec<_>>()
        .join(",")
}

struct Server {
    scheme: String,
    host: String,
    redacted: String,
}

impl Server {
    fn parse(raw: &str) -> Server {
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("nats".to_owned(), raw),
        };
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let hostport = hostport.split('/').next().unwrap_or("");
        let host = if let Some(v6) = hostport.strip_prefix('[') {
            v6.split(']').next().unwrap_or("").to_owned()
        } else {
            hostport
                .rsplit_once(':')
                .map_or(hostport, |(h, _)| h)
                .to_owned()
        };
        let redacted = match userinfo {
            // `user:password` keeps the user; a lone token is the secret itself.
            Some(u) => match u.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{hostport}"),
                None => format!("{scheme}://***@{hostport}"),
            },
            None => format!("{scheme}://{hostport}"),
        };
        Server {
            scheme,
            host,
            redacted,
        }
    }

    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Publishes the server refused for lack of permission, as the server reported them. The
/// server answers a forbidden publish with an error on the connection, not on the request, so
/// the request would only time out; the bus watches these reports to fail it at once with the
/// reason.
#[derive(Default)]
pub(crate) struct Denials {
    seen: Mutex<(u64, VecDeque<(u64, String)>)>,
    notify: Notify,
}

impl Denials {
    /// Parses a server error; records it when it is a permission violation and returns the
    /// subject.
    pub(crate) fn record(&self, server_error: &str) -> Option<String> {
        let subject = violated_subject(server_error)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.0 += 1;
        let n = seen.0;
        seen.1.push_back((n, subject.clone()));
        while seen.1.len() > 256 {
            seen.1.pop_front();
        }
        drop(seen);
        self.notify.notify_waiters();
        Some(subject)
    }

    /// A mark: only refusals recorded after it count for [`Denials::refused`].
    pub(crate) fn mark(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Resolves once the server refused `subject` after `mark`.
    pub(crate) async fn refused(&self, subject: &str, mark: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.1.iter().any(|(n, s)| *n > mark && s == subject) {
                    return;
                }
            }
            notified.await;
        }
    }
}

/// The subject of a `Permissions Violation for Publish to "<subject>"` server error.
pub(crate) fn violated_subject(server_error: &str) -> Option<String> {
    const MARK: &str = "permissions violation for publish to ";
    let lower = server_error.to_ascii_lowercase();
    let at = lower.find(MARK)? + MARK.len();
    let rest = server_error.get(at..)?.trim_start_matches(['"', '\'']);
    let end = rest.find(['"', '\'']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The inbox prefix of a client: `_INBOX_<name>`, the name reduced to subject-token characters.
pub(crate) fn inbox_prefix(name: &str) -> String {
    let token: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("_INBOX_{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_never_survive_redaction() {
        assert_eq!(
            redact_url("nats://svc:hunter2@nats.example:4222"),
            "nats://svc:***@nats.example:4222"
        );
        assert_eq!(
            redact_url("tls://s3cr3tt0ken@a:4222, nats://b:4222"),
            "tls://***@a:4222,nats://b:4222"
        );
        assert_eq!(redact_url("127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn plain_nats_to_another_machine_is_refused_unless_allowed() {
        let mut o = BusOptions::new("nats://nats.nats.svc.cluster.local:4222", "t");
        let problems = o.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "nats.url");
        assert!(
            problems[0].1.contains("nats.allow_plaintext"),
            "{problems:?}"
        );
        o.allow_plaintext = true;
        assert!(o.problems().is_empty());
        o.allow_plaintext = false;
        o.url = "tls://nats.nats.svc.cluster.local:4222".into();
        assert!(o.problems().is_empty());
        o.url = "nats://nats.nats.svc.cluster.local:4222".into();
        o.tls_ca_file = Some("/ca.pem".into());
        assert!(o.problems().is_empty(), "a CA asks for TLS");
        for local in [
            "nats://127.0.0.1:4222",
            "nats://localhost:4222",
            "nats://[::1]:4222",
        ] {
            assert!(BusOptions::new(local, "t").problems().is_empty(), "{local}");
        }
    }

    #[test]
    fn a_refused_url_is_named_without_its_password() {
        let o = BusOptions::new("nats://u:topsecret@10.0.0.5:4222", "t");
        let problems = format!("{:?}", o.problems());
        assert!(!problems.contains("topsecret"), "{problems}");
        assert!(problems.contains("u:***@10.0.0.5"), "{problems}");
    }

    #[test]
    fn reads_the_subject_of_a_permission_violation() {
        assert_eq!(
            violated_subject("Permissions Violation for Publish to \"sync.s1.order.imported\"")
                .as_deref(),
            Some("sync.s1.order.imported")
        );
        assert_eq!(
            violated_subject(
                "'Permissions Violation for Publish to \"$JS.API.STREAM.DELETE.WOO\"'"
            )
            .as_deref(),
            Some("$JS.API.STREAM.DELETE.WOO")
        );
        assert_eq!(
            violated_subject("Permissions Violation for Subscription to \"x\""),
            None
        );
        assert_eq!(violated_subject("authorization violation"), None);
    }

    #[test]
    fn inbox_prefixes_are_one_subject_token() {
        assert_eq!(inbox_prefix("webhook-ingest"), "_INBOX_webhook-ingest");
        assert_eq!(inbox_prefix("a.b c>"), "_INBOX_a_b_c_");
    }

    #[tokio::test]
    async fn a_refusal_after_the_mark_wakes_the_waiter() {
        let d = std::sync::Arc::new(Denials::default());
        d.record("Permissions Violation for Publish to \"old\"");
        let mark = d.mark();
        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.refused("old", mark).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "a refusal before the mark does not count"
        );
        d.record("Permissions Violation for Publish to \"old\"");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
