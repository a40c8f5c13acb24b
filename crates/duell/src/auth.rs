//! The bearer token: when it expires (read from the JWT payload without verifying it; we are not
//! the audience that must trust it) and when to renew it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// A token obtained by one login.
#[derive(Clone)]
pub(crate) struct Token {
    secret: SecretString,
    /// Increases with every login, so a caller that got a 401 with generation N re-logs in only
    /// if nobody replaced token N yet (single flight without a login storm).
    pub(crate) generation: u64,
    /// When this client stops using the token and logs in again.
    pub(crate) renew_at: SystemTime,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token", &"[REDACTED]")
            .field("generation", &self.generation)
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

impl Token {
    /// `margin` is how long before `exp` to renew; it is capped at half the token's lifetime so a
    /// short-lived token is still used (never a login per request). Without a readable `exp`
    /// the token is assumed to live `assumed_ttl`.
    pub(crate) fn new(
        secret: String,
        generation: u64,
        now: SystemTime,
        margin: Duration,
        assumed_ttl: Duration,
    ) -> Token {
        let claims = claims(&secret);
        // Checked: the claims are outside input, and `SystemTime + Duration` panics past the
        // platform's range (an `exp` beyond it reads as no `exp`).
        let at = |secs: u64| UNIX_EPOCH.checked_add(Duration::from_secs(secs));
        let renew_at = match claims.exp.and_then(at) {
            Some(exp) => {
                let issued = claims
                    .iat
                    .and_then(at)
                    .filter(|iat| *iat <= exp)
                    .unwrap_or(now);
                let lifetime = exp.duration_since(issued).unwrap_or_default();
                let margin = margin.min(lifetime / 2);
                exp.checked_sub(margin).unwrap_or(exp)
            }
            None => now + assumed_ttl,
        };
        Token {
            secret: SecretString::from(secret),
            generation,
            renew_at,
        }
    }

    pub(crate) fn needs_renewal(&self, now: SystemTime) -> bool {
        now >= self.renew_at
    }

    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.secret.expose_secret())
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) exp: Option<u64>,
    pub(crate) iat: Option<u64>,
}

/// Reads `exp` and `iat` (DUELL sends `iat` as a string) from a JWT's payload.
pub(crate) fn claims(jwt: &str) -> Claims {
    let Some(payload) = jwt.split('.').nth(1) else {
        return Claims::default();
    };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let trimmed = payload.trim_end_matches('=');
    let Ok(bytes) = engine.decode(trimmed) else {
        return Claims::default();
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
        return Claims::default();
    };
    let secs = |v: Option<&Value>| -> Option<u64> {
        let d = crate::de::decimal_from_value(v?).ok()??;
        u64::try_from(d.trunc()).ok()
    };
    Claims {
        exp: secs(map.get("exp")),
        iat: secs(map.get("iat")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            e.encode(r#"{"alg":"RS256","typ":"JWS"}"#),
            e.encode(payload),
            e.encode("sig")
        )
    }

    #[test]
    fn reads_exp_and_string_iat_from_the_payload() {
        let c = claims(&jwt(
            r#"{"exp":1700259200,"iat":"1700000000","username":"012345"}"#,
        ));
        assert_eq!(
            c,
            Claims {
                exp: Some(1_700_259_200),
                iat: Some(1_700_000_000)
            }
        );
        assert_eq!(claims("not a jwt"), Claims::default());
        assert_eq!(claims("a.!!!.c"), Claims::default());
    }

    #[test]
    fn renews_an_hour_before_expiry_of_a_72_hour_token() {
        let iat = 1_700_000_000u64;
        let t = Token::new(
            jwt(&format!(r#"{{"exp":{},"iat":"{iat}"}}"#, iat + 259_200)),
            1,
            UNIX_EPOCH + Duration::from_secs(iat),
            Duration::from_secs(3600),
            Duration::from_secs(43_200),
        );
        assert_eq!(
            t.renew_at,
            UNIX_EPOCH + Duration::from_secs(iat + 259_200 - 3600)
        );
        assert!(!t.needs_renewal(UNIX_EPOCH + Duration::from_secs(iat + 1000)));
        assert!(t.needs_renewal(UNIX_EPOCH + Duration::from_secs(iat + 259_200 - 3599)));
    }

    #[test]
    fn caps_the_margin_at_half_the_lifetime_of_a_short_token() {
        let iat = 1_700_000_000u64;
        let t = Token::new(
            jwt(&format!(r#"{{"exp":{},"iat":"{iat}"}}"#, iat + 600)),
            1,
            UNIX_EPOCH + Duration::from_secs(iat),
            Duration::from_secs(3600),
            Duration::from_secs(43_200),
        );
        assert_eq!(t.renew_at, UNIX_EPOCH + Duration::from_secs(iat + 300));
    }

    #[test]
    fn an_exp_past_the_clock_range_reads_as_no_exp() {
        // Found by the duell_responses property test: `UNIX_EPOCH + exp` panicked.
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for payload in [
            r#"{"exp":18446744073709551615}"#,
            r#"{"exp":1e19,"iat":"18446744073709551615"}"#,
        ] {
            let t = Token::new(
                jwt(payload),
                1,
                now,
                Duration::from_secs(3600),
                Duration::from_secs(43_200),
            );
            assert_eq!(t.renew_at, now + Duration::from_secs(43_200), "{payload}");
        }
        // A huge iat is ignored, the exp still counts.
        let t = Token::new(
            jwt(r#"{"exp":1700007200,"iat":18446744073709551615}"#),
            1,
            now,
            Duration::from_secs(3600),
            Duration::from_secs(43_200),
        );
        assert_eq!(t.renew_at, now + Duration::from_secs(3600));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let t = Token::new(
            "secret.value.here".into(),
            1,
            SystemTime::now(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(!format!("{t:?}").contains("value.here"));
    }
}
