//! Accounts, sessions, invitations and login throttling, kept in the `duellsync_console`
//! key-value bucket so that they survive restarts and several console replicas share them.
//!
//! - Passwords are argon2id hashes (RustCrypto `argon2`, its default parameters).
//! - A session is a random 256-bit id in an HttpOnly, Secure, SameSite=Strict cookie; the
//!   bucket keys it by the id's SHA-256, so reading the bucket does not give a usable cookie.
//!   Each session carries its own CSRF token, which every state-changing form repeats.
//! - Invitations are random 256-bit tokens (also stored hashed), single-use (deleted with a
//!   compare-and-set when the account is created) and expiring.
//! - Logins are throttled per user name: after 5 failures a lock of 1 minute that doubles up to
//!   15 minutes; a success clears it. They are also throttled per client address (an IPv6
//!   client by its /64), so that one address spraying many user names is stopped too: after 20
//!   failures within 15 minutes the same doubling lock; a success does not clear it (one valid
//!   account must not reset an attacker's count), the window running out does.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use duellsync_bus::{Kv, KvError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every store; creates stores and invites retailers.
    Operator,
    /// One store.
    Retailer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    /// The retailer's store.
    pub store: Option<String>,
    pub created_ms: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub store: Option<String>,
    pub csrf: String,
    pub expires_ms: i64,
}

impl Session {
    /// Whether this session may see and change `store`.
    pub fn may_use(&self, store: &str) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Retailer => self.store.as_deref() == Some(store),
        }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        !submitted.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }

    pub fn actor(&self) -> String {
        match self.role {
            Role::Operator => format!("{} (operator, console)", self.username),
            Role::Retailer => format!("{} (console)", self.username),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invitation {
    pub store: String,
    pub expires_ms: i64,
    pub created_by: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Throttle {
    failures: u32,
    locked_until_ms: i64,
    /// When the first failure counted was (the per-address count runs for a window).
    #[serde(default)]
    first_ms: i64,
}

impl Throttle {
    /// The seconds left of a lock, if locked.
    fn locked(&self, now: i64) -> Option<i64> {
        (self.locked_until_ms > now).then(|| (self.locked_until_ms - now) / 1000 + 1)
    }

    /// Counts a failure; from `max` failures on, a lock of 1 minute doubling up to 15.
    fn fail(&mut self, now: i64, max: u32) {
        if self.failures == 0 {
            self.first_ms = now;
        }
        self.failures += 1;
        if self.failures >= max {
            let lock = 60_000i64 << (self.failures - max).min(4);
            self.locked_until_ms = now + lock.min(15 * 60_000);
        }
    }
}

/// The throttling bucket of a client address: an IPv4 address, or the /64 of an IPv6 one (a
/// single IPv6 client usually holds a whole /64).
pub fn address_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Why a login or an account creation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many failed logins; try again in {0} s")]
    Throttled(i64),
    #[error("the invitation is unknown, used or expired")]
    BadInvitation,
    #[error("the user name is taken")]
    Taken,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Bus(#[from] duellsync_bus::Error),
}

impl From<KvError> for AuthError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Conflict { .. } => AuthError::Taken,
            KvError::Bus(b) => AuthError::Bus(b),
        }
    }
}

pub fn random_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

fn digest(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes make a salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A user name: 1-64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
}

pub fn check_new_password(password: &str, confirm: &str) -> Result<(), AuthError> {
    if password.chars().count() < 12 {
        return Err(AuthError::Invalid("password_short".into()));
    }
    if password != confirm {
        return Err(AuthError::Invalid("password_mismatch".into()));
    }
    Ok(())
}

/// The console's accounts.
#[derive(Clone)]
pub struct Accounts {
    kv: Kv,
    operator_user: String,
    /// The operator's hash from the Kubernetes Secret; `None` = accounts in the bucket only.
    operator_hash: Option<String>,
    session_ttl: Duration,
    invitation_ttl: Duration,
}

const MAX_FAILURES: u32 = 5;
/// Failures from one address before it is locked: more than for one account, since an office
/// behind one NAT address shares it.
const MAX_ADDRESS_FAILURES: u32 = 20;
/// How long failures of an address are remembered without a lock.
const ADDRESS_WINDOW_MS: i64 = 15 * 60_000;

impl Accounts {
    pub fn new(
        kv: Kv,
        operator_user: String,
        operator_hash: Option<String>,
        session_ttl: Duration,
        invitation_ttl: Duration,
    ) -> Accounts {
        Accounts {
            kv,
            operator_user,
            operator_hash,
            session_ttl,
            invitation_ttl,
        }
    }

    fn user_key(username: &str) -> String {
        format!("user.{}", digest(&username.to_ascii_lowercase()))
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, AuthError> {
        Ok(self.kv.get(key).await?.and_then(|e| {
            serde_json::from_slice(&e.value)
                .ok()
                .map(|v| (v, e.revision))
        }))
    }

    fn json<T: Serialize>(v: &T) -> Bytes {
        Bytes::from(serde_json::to_vec(v).expect("account records serialise"))
    }

    /// Whether anyone can log in as operator (first run otherwise).
    pub async fn has_operator(&self) -> Result<bool, AuthError> {
        if self.operator_hash.is_some() {
            return Ok(true);
        }
        Ok(self.kv.get("setup.operator").await?.is_some())
    }

    /// The first-run page: creates the operator, once (compare-and-set on `setup.operator`).
    pub async fn create_first_operator(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(), AuthError> {
        if self.has_operator().await? {
            return Err(AuthError::Taken);
        }
        if !valid_username(username) {
            return Err(AuthError::Invalid("username_invalid".into()));
        }
        let user = User {
            username: username.to_owned(),
            password_hash: hash_password(password),
            role: Role::Operator,
            store: None,
            created_ms: duellsync_events::now_ms(),
            created_by: "first-run".into(),
        };
        self.kv
            .create("setup.operator", Bytes::from(username.to_owned()))
            .await?;
        self.kv
            .put(&Self::user_key(username), Self::json(&user))
            .await?;
        Ok(())
    }

    async fn find(&self, username: &str) -> Result<Option<User>, AuthError> {
        if username == self.operator_user {
            if let Some(hash) = &self.operator_hash {
                return Ok(Some(User {
                    username: username.to_owned(),
                    password_hash: hash.clone(),
                    role: Role::Operator,
                    store: None,
                    created_ms: 0,
                    created_by: "kubernetes secret".into(),
                }));
            }
        }
        Ok(self
            .read::<User>(&Self::user_key(username))
            .await?
            .map(|(u, _)| u))
    }

    /// Checks the password (throttled per user name and per client address) and opens a
    /// session: `(cookie value, session)`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<(String, Session), AuthError> {
        let tkey = format!("throttle.{}", digest(&username.to_ascii_lowercase()));
        let akey = format!("throttle_addr.{}", digest(&address_bucket(client)));
        let now = duellsync_events::now_ms();
        // The address first: a locked address costs no password hash and reads no account.
        let address = self
            .read::<Throttle>(&akey)
            .await?
            .map(|(t, _)| t)
            .filter(|t| t.locked_until_ms > now || now - t.first_ms < ADDRESS_WINDOW_MS);
        if let Some(left) = address.as_ref().and_then(|t| t.locked(now)) {
            return Err(AuthError::Throttled(left));
        }
        let throttle = self.read::<Throttle>(&tkey).await?;
        if let Some(left) = throttle.as_ref().and_then(|(t, _)| t.locked(now)) {
            return Err(AuthError::Throttled(left));
        }
        let user = self.find(username).await?;
        // Verified against a fixed hash when the user does not exist, so that timing does not
        // tell which names exist.
        let ok = match &user {
            Some(u) => verify_password(&u.password_hash, password),
            None => {
                let _ = verify_password(dummy_hash(), password);
                false
            }
        };
        if !ok {
            let mut t = throttle.map(|(t, _)| t).unwrap_or_default();
            t.fail(now, MAX_FAILURES);
            self.kv.put(&tkey, Self::json(&t)).await?;
            let mut a = address.unwrap_or_default();
            a.fail(now, MAX_ADDRESS_FAILURES);
            self.kv.put(&akey, Self::json(&a)).await?;
            return Err(AuthError::Wrong);
        }
        let _ = self.kv.delete(&tkey, None).await;
        let user = user.expect("verified");
        self.open_session(&user).await
    }

    async fn open_session(&self, user: &User) -> Result<(String, Session), AuthError> {
        let id = random_token();
        let session = Session {
            username: user.username.clone(),
            role: user.role,
            store: user.store.clone(),
            csrf: random_token(),
            expires_ms: duellsync_events::now_ms() + self.session_ttl.as_millis() as i64,
        };
        self.kv
            .put(&format!("session.{}", digest(&id)), Self::json(&session))
            .await?;
        Ok((id, session))
    }

    /// The session of a cookie value, if it is valid; a session in use is extended.
    pub async fn session(&self, id: &str) -> Result<Option<Session>, AuthError> {
        if id.is_empty() || id.len() > 100 {
            return Ok(None);
        }
        let key = format!("session.{}", digest(id));
        let Some((mut s, rev)) = self.read::<Session>(&key).await? else {
            return Ok(None);
        };
        let now = duellsync_events::now_ms();
        if s.expires_ms < now {
            let _ = self.kv.delete(&key, None).await;
            return Ok(None);
        }
        let ttl = self.session_ttl.as_millis() as i64;
        if s.expires_ms - now < ttl - 5 * 60_000 {
            s.expires_ms = now + ttl;
            let _ = self.kv.update(&key, Self::json(&s), rev).await;
        }
        Ok(Some(s))
    }

    /// Whether the session of a cookie value is still open (not logged out, not expired),
    /// without extending it: a live stream asks this while it runs, and an open page must not
    /// keep a session alive forever.
    pub async fn is_open(&self, id: &str) -> Result<bool, AuthError> {
        if id.is_empty() || id.len() > 100 {
            return Ok(false);
        }
        let found = self
            .read::<Session>(&format!("session.{}", digest(id)))
            .await?;
        Ok(found.is_some_and(|(s, _)| s.expires_ms >= duellsync_events::now_ms()))
    }

    pub async fn logout(&self, id: &str) {
        let _ = self
            .kv
            .delete(&format!("session.{}", digest(id)), None)
            .await;
    }

    /// A single-use invitation to create a retailer account for `store`; returns its token.
    pub async fn invite(&self, store: &str, by: &str) -> Result<String, AuthError> {
        let token = random_token();
        let inv = Invitation {
            store: store.to_owned(),
            expires_ms: duellsync_events::now_ms() + self.invitation_ttl.as_millis() as i64,
            created_by: by.to_owned(),
        };
        self.kv
            .create(&format!("invite.{}", digest(&token)), Self::json(&inv))
            .await?;
        Ok(token)
    }

    /// The invitation of a token, while it can be used.
    pub async fn invitation(&self, token: &str) -> Result<Option<(Invitation, u64)>, AuthError> {
        if token.is_empty() || token.len() > 100 {
            return Ok(None);
        }
        let found = self
            .read::<Invitation>(&format!("invite.{}", digest(token)))
            .await?;
        Ok(found.filter(|(i, _)| i.expires_ms > duellsync_events::now_ms()))
    }

    /// Uses an invitation: creates the retailer account and opens its session. The invitation
    /// is deleted with a compare-and-set first, so two uses of one link cannot both succeed.
    pub async fn accept(
        &self,
        token: &str,
        username: &str,
        password: &str,
        confirm: &str,
    ) -> Result<(String, Session), AuthError> {
        let Some((inv, rev)) = self.invitation(token).await? else {
            return Err(AuthError::BadInvitation);
        };
        if !valid_username(username) || username == self.operator_user {
            return Err(AuthError::Invalid("username_invalid".into()));
        }
        check_new_password(password, confirm)?;
        if self.find(username).await?.is_some() {
            return Err(AuthError::Taken);
        }
        self.kv
            .delete(&format!("invite.{}", digest(token)), Some(rev))
            .await
            .map_err(|_| AuthError::BadInvitation)?;
        let user = User {
            username: username.to_owned(),
            password_hash: hash_password(password),
            role: Role::Retailer,
            store: Some(inv.store.clone()),
            created_ms: duellsync_events::now_ms(),
            created_by: inv.created_by.clone(),
        };
        self.kv
            .create(&Self::user_key(username), Self::json(&user))
            .await?;
        self.open_session(&user).await
    }
}

fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a password anyone has"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_and_verify_only_themselves() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterx"));
        assert!(!verify_password("not a hash", "x"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[test]
    fn a_retailer_session_sees_only_its_store() {
        let s = Session {
            username: "b".into(),
            role: Role::Retailer,
            store: Some("bolt".into()),
            csrf: "t0ken".into(),
            expires_ms: 0,
        };
        assert!(s.may_use("bolt"));
        assert!(!s.may_use("acme"));
        assert!(s.csrf_ok("t0ken"));
        assert!(!s.csrf_ok("t0ke"));
        assert!(!s.csrf_ok(""));
        let op = Session {
            role: Role::Operator,
            store: None,
            ..s
        };
        assert!(op.may_use("acme"));
    }

    #[test]
    fn addresses_are_throttled_by_host_or_ipv6_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_bucket(mapped), "192.0.2.7");
    }

    #[test]
    fn a_throttle_locks_from_the_limit_and_doubles_up_to_15_minutes() {
        let mut t = Throttle::default();
        for _ in 0..4 {
            t.fail(1_000, 5);
        }
        assert_eq!(t.locked(1_000), None);
        t.fail(1_000, 5);
        assert_eq!(t.locked(1_000), Some(61));
        for _ in 0..10 {
            t.fail(1_000, 5);
        }
        assert_eq!(t.locked(1_000), Some(901));
        assert_eq!(t.first_ms, 1_000);
    }

    #[test]
    fn user_names_and_passwords_are_checked() {
        assert!(valid_username("kari@butikk.no"));
        assert!(!valid_username("kari nordmann"));
        assert!(!valid_username(""));
        assert!(check_new_password("short", "short").is_err());
        assert!(check_new_password("long enough pw", "long enough px").is_err());
        assert!(check_new_password("long enough pw", "long enough pw").is_ok());
    }
}
