//! Per-store settings (SPEC §4) and the layered config loading every service shares.
//!
//! Stores come from one TOML file holding `[stores.<id>]` tables, one TOML file per store
//! (the id is the file name), or a directory of such files (one Kubernetes ConfigMap per store).
//! `DUELLSYNC_STORES__<ID>__<KEY>__…` environment variables override any key, and secrets are
//! written as `{ env = "NAME" }` or `{ file = "/path" }` so that they live in Secrets, not in
//! ConfigMaps. Every problem is reported with the key, the value and how to fix it, all at once.
#![forbid(unsafe_code)]

pub mod duration;
mod layered;
pub mod refusal;
mod secret;
pub mod service;
mod store;

pub use layered::{env_overlay, load_layered};
pub use refusal::{check_store_table, Code as RefusalCode, Refusal};
pub use secret::{NoKeys, Secret, SecretSource, Unseal};
pub use store::*;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: file and key path (`stores/s1.toml: deduct_stock`).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}
