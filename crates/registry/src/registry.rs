//! Reading and changing store records: every change is validated by the rules of
//! `duellsync-settings` before it is stored (nothing invalid is ever stored), written with a
//! compare-and-set on the revision it was based on (two editors never overwrite each other
//! unseen), and audited in the `AUDIT` stream (who, when, which fields).

use std::collections::BTreeMap;

use bytes::Bytes;
use duellsync_bus::{Bus, Kv, KvError, StartAt};
use duellsync_events::{KV_STORES, STREAM_AUDIT};
use duellsync_settings::{ConfigError, Needs, Unseal, SECRET_KEYS};
use serde::{Deserialize, Serialize};

use crate::record::{diff, FieldChange, Stamp, StoreRecord};
use crate::seal::Keyring;

/// What went wrong with a registry operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings break a rule; nothing was stored. Each problem names key, value and fix.
    #[error("{0}")]
    Invalid(ConfigError),
    /// Someone else changed the store since it was read: read it again and redo the change.
    #[error("store `{0}` was changed by someone else meanwhile; read it again")]
    Conflict(String),
    #[error("no store `{0}` in the registry")]
    NotFound(String),
    /// NATS could not be reached or refused: try again later.
    #[error(transparent)]
    Bus(#[from] duellsync_bus::Error),
}

impl From<KvError> for Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Conflict { key, .. } => Error::Conflict(key),
            KvError::Bus(b) => Error::Bus(b),
        }
    }
}

/// A record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: StoreRecord,
    pub revision: u64,
}

/// A change ready to be committed: the record that would be stored and what differs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    /// The revision the change is based on; `None` creates the store.
    pub base: Option<u64>,
    pub record: StoreRecord,
    pub changes: Vec<FieldChange>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.base.is_some() && self.changes.is_empty()
    }
}

/// One audited change, as `syncctl store history` and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub store: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    pub by: String,
    pub at_ms: i64,
    /// The registry revision the change produced (of the delete marker for a delete).
    pub revision: u64,
    pub changes: Vec<FieldChange>,
}

fn audit_subject(store: &str) -> String {
    format!("audit.{store}.settings")
}

/// Validation at save time opens what it can; a sealed value of a class this process has no
/// key for was validated when it was sealed and counts as set.
struct SaveCheck<'a>(&'a Keyring);

impl Unseal for SaveCheck<'_> {
    fn unseal(&self, sealed: &str, aad: &str) -> Result<String, String> {
        match self.0.unseal(sealed, aad) {
            Err(e) if e.contains("does not have") => Ok("x".repeat(64)),
            other => other,
        }
    }
}

/// The store registry: the one source of truth of store settings.
#[derive(Debug, Clone)]
pub struct Registry {
    bus: Bus,
    kv: Kv,
    keys: Keyring,
}

impl Registry {
    /// Opens the registry, declaring its bucket and audit stream if needed.
    pub async fn open(bus: &Bus, keys: Keyring) -> Result<Registry, Error> {
        let kv = bus.ensure_kv(&KV_STORES).await?;
        bus.ensure_stream(&STREAM_AUDIT).await?;
        Ok(Registry {
            bus: bus.clone(),
            kv,
            keys,
        })
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    pub async fn get(&self, id: &str) -> Result<Option<Stored>, Error> {
        match self.kv.get(id).await? {
            Some(e) => Ok(decode(&e.value).map(|record| Stored {
                record,
                revision: e.revision,
            })),
            None => Ok(None),
        }
    }

    /// Every store, by id.
    pub async fn list(&self) -> Result<Vec<Stored>, Error> {
        Ok(self
            .kv
            .entries()
            .await?
            .into_iter()
            .filter_map(|e| {
                decode(&e.value).map(|record| Stored {
                    record,
                    revision: e.revision,
                })
            })
            .collect())
    }

    /// Checks a store's new settings and computes what would change, without storing.
    ///
    /// `table` is the whole settings table as wanted. A secret given as a plain string is
    /// sealed (kept as it was when it opens to the same value); references and sealed values
    /// stay as they are. `base` is the record the change starts from (`None`: a new store).
    pub fn plan(
        &self,
        id: &str,
        mut table: toml::Table,
        base: Option<&Stored>,
        by: &str,
    ) -> Result<Plan, Error> {
        if !duellsync_events::is_valid_store_id(id) {
            return Err(Error::Invalid(ConfigError::one(
                "id",
                format!("`{id}` is not a valid store id; use 1-32 lowercase letters, digits, '-' or '_'"),
            )));
        }
        match table.get("id") {
            Some(toml::Value::String(s)) if s == id => {}
            None => {}
            Some(other) => {
                return Err(Error::Invalid(ConfigError::one(
                    "id",
                    format!(
                    "`{other}` differs from the store's id `{id}`; make them equal or leave it out"
                ),
                )))
            }
        }
        table.remove("id");
        let before = base.map(|b| b.record.table()).unwrap_or_default();
        let mut problems = Vec::new();
        for key in SECRET_KEYS {
            let (section, name) = key.split_once('.').expect("secret keys are dotted");
            let Some(toml::Value::Table(sec)) = table.get_mut(section) else {
                continue;
            };
            let Some(toml::Value::String(plain)) = sec.get(name).cloned() else {
                continue;
            };
            if plain.is_empty() {
                sec.remove(name);
                continue;
            }
            let old = before
                .get(section)
                .and_then(|s| s.get(name))
                .and_then(|v| v.get("sealed"))
                .and_then(|v| v.as_str());
            let sealed = match old {
                Some(old)
                    if self.keys.unseal(old, &format!("{id}/{key}")).ok()
                        == Some(plain.clone()) =>
                {
                    old.to_owned()
                }
                _ => match self.keys.seal(id, key, &plain) {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push(duellsync_settings::Problem {
                            key: key.to_owned(),
                            message: e,
                        });
                        continue;
                    }
                },
            };
            let mut t = toml::Table::new();
            t.insert("sealed".into(), toml::Value::String(sealed));
            sec.insert(name.to_owned(), toml::Value::Table(t));
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(ConfigError { problems }));
        }
        let text = toml::to_string(&table).map_err(|e| {
            Error::Invalid(ConfigError::one(
                id,
                format!("cannot be written as TOML: {e}"),
            ))
        })?;
        duellsync_settings::parse_stores_with(
            id,
            id,
            &text,
            &[],
            Needs::RECORD,
            &SaveCheck(&self.keys),
        )
        .map_err(Error::Invalid)?;
        let changes = diff(&before, &table);
        let now = duellsync_events::now_ms();
        let mut secrets: BTreeMap<String, Stamp> =
            base.map(|b| b.record.secrets.clone()).unwrap_or_default();
        for c in &changes {
            if SECRET_KEYS.contains(&c.key.as_str()) {
                if c.after.is_some() {
                    secrets.insert(
                        c.key.clone(),
                        Stamp {
                            at_ms: now,
                            by: by.to_owned(),
                        },
                    );
                } else {
                    secrets.remove(&c.key);
                }
            }
        }
        Ok(Plan {
            id: id.to_owned(),
            base: base.map(|b| b.revision),
            record: StoreRecord {
                id: id.to_owned(),
                settings: text,
                secrets,
                changed_at_ms: now,
                changed_by: by.to_owned(),
            },
            changes,
        })
    }

    /// Stores a planned change if the store is still at the plan's base revision, then audits
    /// it. Returns the new revision.
    pub async fn commit(&self, plan: &Plan) -> Result<u64, Error> {
        let value = serde_json::to_vec(&plan.record).expect("a record serialises");
        let revision = self
            .kv
            .write(&plan.id, Bytes::from(value), plan.base)
            .await?;
        let entry = AuditEntry {
            store: plan.id.clone(),
            action: if plan.base.is_some() {
                "update"
            } else {
                "create"
            }
            .into(),
            by: plan.record.changed_by.clone(),
            at_ms: plan.record.changed_at_ms,
            revision,
            changes: plan.changes.clone(),
        };
        self.audit(&entry).await;
        Ok(revision)
    }

    /// Plans and commits in one go.
    pub async fn save(
        &self,
        id: &str,
        table: toml::Table,
        base: Option<&Stored>,
        by: &str,
    ) -> Result<(Plan, u64), Error> {
        let plan = self.plan(id, table, base, by)?;
        if plan.is_noop() {
            let rev = plan.base.unwrap_or_default();
            return Ok((plan, rev));
        }
        let rev = self.commit(&plan).await?;
        Ok((plan, rev))
    }

    /// Deletes a store (if still at `expected`, when given) and audits it.
    pub async fn delete(&self, id: &str, expected: Option<u64>, by: &str) -> Result<(), Error> {
        let Some(current) = self.get(id).await? else {
            return Err(Error::NotFound(id.to_owned()));
        };
        if expected.is_some_and(|e| e != current.revision) {
            return Err(Error::Conflict(id.to_owned()));
        }
        self.kv.delete(id, Some(current.revision)).await?;
        let revision = self
            .kv
            .history(id)
            .await
            .ok()
            .and_then(|h| h.last().map(|e| e.revision))
            .unwrap_or_default();
        let entry = AuditEntry {
            store: id.to_owned(),
            action: "delete".into(),
            by: by.to_owned(),
            at_ms: duellsync_events::now_ms(),
            revision,
            changes: diff(&current.record.table(), &toml::Table::new()),
        };
        self.audit(&entry).await;
        Ok(())
    }

    async fn audit(&self, entry: &AuditEntry) {
        let payload = serde_json::to_vec(entry).expect("an audit entry serialises");
        let id = format!("settings:{}:{}", entry.store, entry.revision);
        if let Err(e) = self
            .bus
            .publish_raw(
                &audit_subject(&entry.store),
                &id,
                duellsync_bus::HeaderMap::new(),
                Bytes::from(payload),
            )
            .await
        {
            // The change is stored; its audit entry is what is lost. Loud, so it is noticed.
            tracing::error!(store = %entry.store, revision = entry.revision, error = %e, "settings change stored but not audited");
        }
    }

    /// Every audited change of a store, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<AuditEntry>, Error> {
        let messages = self
            .bus
            .read_at(
                STREAM_AUDIT.name,
                &[audit_subject(id)],
                StartAt::First,
                usize::MAX,
            )
            .await?;
        Ok(messages
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.payload).ok())
            .collect())
    }
}

fn decode(value: &[u8]) -> Option<StoreRecord> {
    match serde_json::from_slice(value) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "a registry record cannot be read; ignored");
            None
        }
    }
}
