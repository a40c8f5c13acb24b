//! A service's configuration and where its stores come from: the config file and
//! `DUELLSYNC_*` variables, then the registry watched for the service's shard with its own
//! sealing keys and environment.

use std::path::{Path, PathBuf};

use duellsync_settings::service::{check_config, load_service_config, CheckReport, ServiceConfig};
use duellsync_settings::ConfigError;

use crate::{Keyring, RegistrySource, StoreSource};

/// The arguments every store-serving service takes, flattened into its own `Args` (which names
/// the binary and says what it does).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Service config file (TOML); `DUELLSYNC_*` environment variables override it.
    #[arg(long, env = "DUELLSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the configuration and the stores it would serve, print the result as JSON and
    /// exit (0 valid, 2 invalid) without starting anything (`syncctl config check --service`).
    #[arg(long)]
    pub check_config: bool,
}

impl ServiceArgs {
    /// `--check-config`: the service's own rules (`validate`) and its sealing keys, printed as
    /// JSON; returns the exit code.
    pub fn check<T: ServiceConfig>(
        &self,
        service: &str,
        env: &[(String, String)],
        validate: impl Fn(&T) -> Result<(), ConfigError>,
    ) -> i32 {
        let report = check_service::<T>(service, self.config.as_deref(), env, validate);
        duellsync_settings::service::print_check_report(&report)
    }

    /// The config, checked by `validate`, and the registry source of the stores of its shard.
    pub fn load<T: ServiceConfig>(
        &self,
        env: &[(String, String)],
        validate: impl Fn(&T) -> Result<(), ConfigError>,
    ) -> Result<(T, StoreSource), ConfigError> {
        let (config, stores) = load_service::<T>(self.config.as_deref(), env)?;
        validate(&config)?;
        Ok((config, stores))
    }
}

/// Loads a service config and the registry source of its shard; a bad config or an unusable
/// sealing key is an error here, before anything is bound.
pub fn load_service<T: ServiceConfig>(
    path: Option<&Path>,
    env: &[(String, String)],
) -> Result<(T, StoreSource), ConfigError> {
    let config: T = load_service_config(path, env)?;
    let keys = Keyring::from_section(config.seal(), env)?;
    let source = StoreSource::Registry(RegistrySource {
        shard: config.shard().to_owned(),
        keys,
        env: env.to_vec(),
        needs: config.secrets_needed(),
    });
    Ok((config, source))
}

/// `<service> --check-config`: the service's own rules and its sealing keys.
pub fn check_service<T: ServiceConfig>(
    service: &str,
    path: Option<&Path>,
    env: &[(String, String)],
    validate: impl Fn(&T) -> Result<(), ConfigError>,
) -> CheckReport {
    check_config::<T>(service, path, env, |c| {
        let mut problems = Vec::new();
        if let Err(e) = validate(c) {
            problems.extend(e.problems);
        }
        if let Err(e) = Keyring::from_section(c.seal(), env) {
            problems.extend(e.problems);
        }
        if !c.shard().is_empty() && !duellsync_events::is_valid_store_id(c.shard()) {
            problems.push(duellsync_settings::Problem {
                key: "shard".into(),
                message: format!(
                    "`{}` is not a shard name; use 1-32 lowercase letters, digits, '-' or '_' (DUELLSYNC_SHARD=shard-a), or leave it empty to serve every store",
                    c.shard()
                ),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    })
}
