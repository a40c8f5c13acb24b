//! The store registry: store settings as live data in a JetStream key-value bucket
//! (`duellsync_stores`, one record per store), the one source of truth every service watches.
//!
//! - [`Registry`]: read, plan (validate with the rules of `duellsync-settings`, diff), commit
//!   (compare-and-set on the revision read, then an audit entry in the `AUDIT` stream), delete,
//!   history. Used by `syncctl store …` and the console.
//! - [`seal`]: secrets entered in the console or applied from a file are sealed (XChaCha20-
//!   Poly1305) under keys from the environment; `{ env }`/`{ file }` references stay as they are.
//! - [`StoreSource`] and [`Supervisor`]: how a service runs its stores, restarting a store's
//!   tasks when its record changes and, for the stateful services, holding a per-store lease.
#![forbid(unsafe_code)]

pub mod record;
mod registry;
pub mod seal;
mod service;
mod source;
mod supervisor;

pub use record::{FieldChange, Stamp, StoreRecord};
pub use registry::{AuditEntry, Error, Plan, Registry, Stored};
pub use seal::{generate_key, KeyClass, Keyring};
pub use service::{check_service, load_service, ServiceArgs};
pub use source::{RegistrySource, StoreSource, StoreUpdate};
pub use supervisor::{StoreRun, Supervisor, LEASE_TTL};
