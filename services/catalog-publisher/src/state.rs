//! The publisher's state for one store: the DUELL projection, the links to WooCommerce, the
//! work still to do, and stock holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use duellsync_catalog::Source;
pub(crate) use duellsync_catalog::{Hold, Link};
use duellsync_store::{Commit, Store, Table};
use serde::{Deserialize, Serialize};

pub(crate) type Key = (String, i64);
pub(crate) type NameKey = (String, String);

/// What kind of write an intent announces.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Trash,
}

/// A write that was sent (or is about to be) but whose result is not recorded yet. Written and
/// flushed before the request goes out; after a crash the publisher reads WooCommerce to learn
/// what happened instead of writing again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Pending {
    pub op: Op,
    pub sku: String,
    pub woo_id: u64,
    pub parent_woo_id: u64,
    pub at_ms: i64,
    /// The write makes WooCommerce download an image: not idempotent, settled like a create.
    #[serde(default)]
    pub downloads: bool,
    /// The image URL it downloads, if any (another product showing it waits for the result).
    #[serde(default)]
    pub image_url: String,
}

/// Handles to every table; cheap to clone.
#[derive(Clone)]
pub(crate) struct Tables {
    pub store: Store,
    pub source: Table<Key, Source>,
    pub link: Table<Key, Link>,
    /// WooCommerce product or variation id → DUELL product id.
    pub rev: Table<Key, i64>,
    /// Lower-cased SKU → DUELL product ids with that number (numbers are not unique in DUELL).
    pub sku: Table<NameKey, Vec<i64>>,
    /// DUELL parent id → its variants' ids.
    pub children: Table<Key, Vec<i64>>,
    /// Products whose WooCommerce state may differ from the desired one, with a generation
    /// counter so a write that raced a newer change does not clear it.
    pub dirty: Table<Key, u64>,
    pub pending: Table<Key, Pending>,
    /// Image source URL → attachment id in WooCommerce (never download the same image twice).
    pub images: Table<NameKey, u64>,
    /// Category path ("A > B") → WooCommerce term id.
    pub categories: Table<NameKey, u64>,
    pub holds: Table<Key, Hold>,
    /// Orders whose released hold was pruned (Unix ms of the pruning): a late or replayed
    /// observation of such an order must not hold its units again.
    pub released: Table<Key, i64>,
    /// Per-store marks (the start of the last full sync).
    pub marks: Table<NameKey, i64>,
    /// Messages owed to the streams (see `outbox`), by event id.
    pub outbox: Table<NameKey, crate::outbox::Entry>,
    /// Products that failed for a reason retrying does not fix: left alone until their cause
    /// changes (new DUELL facts, the clashing product renamed) or a replay.
    pub parked: Table<Key, Parked>,
    /// Full syncs to run (recorded with their scan marker's ack, dropped with their report).
    pub runs: Table<NameKey, crate::reconcile::Run>,
    /// Source of dirty-mark generations, shared by every task of the process.
    gens: Arc<AtomicU64>,
}

/// Why a product is left alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Parked {
    pub code: String,
    pub message: String,
    /// The SKU it failed with (a clash is retried when the SKU is freed).
    pub sku: String,
    pub at_ms: i64,
}

impl Tables {
    pub fn new(store: &Store) -> Tables {
        Tables {
            store: store.clone(),
            source: store.table("pub_source"),
            link: store.table("pub_link"),
            rev: store.table("pub_rev"),
            sku: store.table("pub_sku"),
            children: store.table("pub_children"),
            dirty: store.table("pub_dirty"),
            pending: store.table("pub_pending"),
            images: store.table("pub_images"),
            categories: store.table("pub_categories"),
            holds: store.table("pub_holds"),
            released: store.table("pub_released"),
            marks: store.table("pub_marks"),
            outbox: crate::outbox::table(store),
            parked: store.table("pub_parked"),
            runs: store.table("pub_runs"),
            gens: Arc::new(AtomicU64::new(first_generation())),
        }
    }

    /// A generation newer than `prev` and than every generation handed out before, in this
    /// process or (by the clock) an earlier one. A mark that is cleared and set again must not
    /// get a generation a writer may still hold from the first mark.
    fn next_gen(&self, prev: u64) -> u64 {
        let counter = self.gens.fetch_add(1, Ordering::Relaxed) + 1;
        counter.max(prev + 1)
    }
}

/// Microseconds since the Unix epoch. An earlier run started from its own start time and drew
/// one generation per mark, far fewer than the microseconds that passed since: a restart does
/// not hand out its generations again (and `next_gen` stays above any mark still stored).
fn first_generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
        .unwrap_or(0)
}

/// A `(store, id)` key.
pub(crate) fn mk(store: &str, id: i64) -> Key {
    (store.to_owned(), id)
}

/// Reads through to sled, with this batch's changes on top; `commit` writes them atomically.
pub(crate) struct Staged<'a> {
    pub t: &'a Tables,
    pub store_id: &'a str,
    pub commit: Commit,
    source: BTreeMap<i64, Source>,
    link: BTreeMap<i64, Option<Link>>,
    dirty: BTreeMap<i64, Option<u64>>,
    /// Calls of `mark_dirty` so far (which message dirtied something, for tracing).
    marks: u64,
    holds: BTreeMap<i64, Option<Hold>>,
    skus: BTreeMap<String, Vec<i64>>,
    children: BTreeMap<i64, Vec<i64>>,
    /// (order, phase, product): stock read before DUELL applied an order's phase must be read
    /// again (see `set_hold`).
    pub refresh: Vec<(i64, i32, i64)>,
}

impl<'a> Staged<'a> {
    pub fn new(t: &'a Tables, store_id: &'a str) -> Self {
        Staged {
            t,
            store_id,
            commit: Commit::new(),
            source: BTreeMap::new(),
            link: BTreeMap::new(),
            dirty: BTreeMap::new(),
            marks: 0,
            holds: BTreeMap::new(),
            skus: BTreeMap::new(),
            children: BTreeMap::new(),
            refresh: Vec::new(),
        }
    }

    pub fn source(&self, id: i64) -> anyhow::Result<Option<Source>> {
        if let Some(s) = self.source.get(&id) {
            return Ok(Some(s.clone()));
        }
        Ok(self.t.source.get(&mk(self.store_id, id))?)
    }

    pub fn set_source(&mut self, id: i64, s: Source) {
        self.t
            .source
            .put(&mut self.commit, &mk(self.store_id, id), &s);
        self.source.insert(id, s);
    }

    pub fn link(&self, id: i64) -> anyhow::Result<Option<Link>> {
        if let Some(l) = self.link.get(&id) {
            return Ok(l.clone());
        }
        Ok(self.t.link.get(&mk(self.store_id, id))?)
    }

    pub fn set_link(&mut self, id: i64, l: Link) -> anyhow::Result<()> {
        if let Some(old) = self.link(id)? {
            if old.woo.woo_id != l.woo.woo_id {
                self.t
                    .rev
                    .remove(&mut self.commit, &mk(self.store_id, old.woo.woo_id as i64));
            }
        }
        self.t.rev.put(
            &mut self.commit,
            &mk(self.store_id, l.woo.woo_id as i64),
            &id,
        );
        self.t
            .link
            .put(&mut self.commit, &mk(self.store_id, id), &l);
        self.link.insert(id, Some(l));
        Ok(())
    }

    pub fn remove_link(&mut self, id: i64) -> anyhow::Result<()> {
        if let Some(old) = self.link(id)? {
            self.t
                .rev
                .remove(&mut self.commit, &mk(self.store_id, old.woo.woo_id as i64));
        }
        self.t.link.remove(&mut self.commit, &mk(self.store_id, id));
        self.link.insert(id, None);
        Ok(())
    }

    pub fn dirty_gen(&self, id: i64) -> anyhow::Result<Option<u64>> {
        if let Some(d) = self.dirty.get(&id) {
            return Ok(*d);
        }
        Ok(self.t.dirty.get(&mk(self.store_id, id))?)
    }

    /// Marks a product as needing a comparison with WooCommerce; returns the new generation.
    pub fn mark_dirty(&mut self, id: i64) -> anyhow::Result<u64> {
        let g = self.t.next_gen(self.dirty_gen(id)?.unwrap_or(0));
        self.t
            .dirty
            .put(&mut self.commit, &mk(self.store_id, id), &g);
        self.dirty.insert(id, Some(g));
        self.marks += 1;
        Ok(g)
    }

    /// How many times this batch marked a product dirty.
    pub fn dirty_marks(&self) -> u64 {
        self.marks
    }

    /// Clears the dirty mark if it is still at generation `gen` when the commit is applied.
    /// Other tasks (the reconciliation, the inputs) commit marks concurrently; a check made now
    /// would let this commit erase a newer mark that lands between staging and applying.
    pub fn clear_dirty(&mut self, id: i64, gen: u64) {
        let key = mk(self.store_id, id);
        match self.dirty.get(&id) {
            // Marked by this batch: its own write decides.
            Some(Some(g)) if *g == gen => self.t.dirty.remove(&mut self.commit, &key),
            Some(_) => return,
            None => self.t.dirty.remove_if(&mut self.commit, &key, &gen),
        }
        self.dirty.insert(id, None);
    }

    pub fn hold(&self, order: i64) -> anyhow::Result<Option<Hold>> {
        if let Some(h) = self.holds.get(&order) {
            return Ok(h.clone());
        }
        Ok(self.t.holds.get(&mk(self.store_id, order))?)
    }

    pub fn set_hold(&mut self, order: i64, h: Hold) {
        self.t
            .holds
            .put(&mut self.commit, &mk(self.store_id, order), &h);
        self.holds.insert(order, Some(h));
    }

    pub fn remove_hold(&mut self, order: i64) {
        self.t
            .holds
            .remove(&mut self.commit, &mk(self.store_id, order));
        self.holds.insert(order, None);
    }

    fn sku_ids(&self, sku: &str) -> anyhow::Result<Vec<i64>> {
        if let Some(ids) = self.skus.get(sku) {
            return Ok(ids.clone());
        }
        Ok(self
            .t
            .sku
            .get(&(self.store_id.to_owned(), sku.to_owned()))?
            .unwrap_or_default())
    }

    fn put_sku_ids(&mut self, sku: String, ids: Vec<i64>) {
        let k = (self.store_id.to_owned(), sku.clone());
        if ids.is_empty() {
            self.t.sku.remove(&mut self.commit, &k);
        } else {
            self.t.sku.put(&mut self.commit, &k, &ids);
        }
        self.skus.insert(sku, ids);
    }

    pub fn add_sku(&mut self, sku: &str, id: i64) -> anyhow::Result<()> {
        let sku = sku.trim().to_lowercase();
        let mut ids = self.sku_ids(&sku)?;
        if !ids.contains(&id) {
            ids.push(id);
            ids.sort_unstable();
            self.put_sku_ids(sku, ids);
        }
        Ok(())
    }

    pub fn remove_sku(&mut self, sku: &str, id: i64) -> anyhow::Result<()> {
        let sku = sku.trim().to_lowercase();
        let mut ids = self.sku_ids(&sku)?;
        if ids.contains(&id) {
            ids.retain(|i| *i != id);
            self.put_sku_ids(sku, ids);
        }
        Ok(())
    }

    pub fn add_child(&mut self, parent: i64, child: i64) -> anyhow::Result<()> {
        let mut ids = match self.children.get(&parent) {
            Some(ids) => ids.clone(),
            None => self
                .t
                .children
                .get(&mk(self.store_id, parent))?
                .unwrap_or_default(),
        };
        if !ids.contains(&child) {
            ids.push(child);
            ids.sort_unstable();
            self.t
                .children
                .put(&mut self.commit, &mk(self.store_id, parent), &ids);
            self.children.insert(parent, ids);
        }
        Ok(())
    }

    /// A new DUELL stock fact about a product (a reading, a hold): what to write is known
    /// again, so a stock a full sync saw WooCommerce lower may be raised (see
    /// [`Link::keep_lower_stock`]).
    pub fn stock_fact(&mut self, id: i64) -> anyhow::Result<()> {
        if let Some(mut l) = self.link(id)? {
            if l.keep_lower_stock {
                l.keep_lower_stock = false;
                self.set_link(id, l)?;
            }
        }
        Ok(())
    }

    /// Takes a product out of the parked set (its cause may have changed) and marks it dirty,
    /// so it is tried again. Returns the failure code it was parked with.
    pub fn unpark(&mut self, id: i64) -> anyhow::Result<Option<String>> {
        let key = mk(self.store_id, id);
        let Some(p) = self.t.parked.get(&key)? else {
            return Ok(None);
        };
        self.t.parked.remove(&mut self.commit, &key);
        self.mark_dirty(id)?;
        Ok(Some(p.code))
    }

    pub fn parked(&self, id: i64) -> anyhow::Result<Option<Parked>> {
        Ok(self.t.parked.get(&mk(self.store_id, id))?)
    }

    pub fn children(&self, parent: i64) -> anyhow::Result<Vec<i64>> {
        Ok(match self.children.get(&parent) {
            Some(ids) => ids.clone(),
            None => self
                .t
                .children
                .get(&mk(self.store_id, parent))?
                .unwrap_or_default(),
        })
    }

    /// Whether this batch marked any product dirty.
    pub fn dirtied(&self) -> bool {
        self.dirty.values().any(|d| d.is_some())
    }

    pub async fn commit(self) -> anyhow::Result<()> {
        self.t.store.commit(self.commit).await?;
        Ok(())
    }
}

/// DUELL ids of the products with this SKU.
pub(crate) fn ids_for_sku(t: &Tables, store: &str, sku: &str) -> anyhow::Result<Vec<i64>> {
    Ok(t.sku
        .get(&(store.to_owned(), sku.trim().to_lowercase()))?
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn staged_indexes_see_their_own_earlier_changes() {
        let store = Store::temporary().unwrap();
        let t = Tables::new(&store);
        let mut st = Staged::new(&t, "s1");
        st.add_sku("SAME", 1).unwrap();
        st.add_sku("same ", 2).unwrap();
        st.add_child(10, 11).unwrap();
        st.add_child(10, 12).unwrap();
        st.commit().await.unwrap();
        assert_eq!(ids_for_sku(&t, "s1", "Same").unwrap(), vec![1, 2]);
        assert_eq!(t.children.get(&mk("s1", 10)).unwrap(), Some(vec![11, 12]));
    }

    /// A writer planned product 7 at the generation it read, wrote it, and retires the mark;
    /// meanwhile a withdrawal marked it again and committed first. The withdrawal must stay
    /// dirty, or it never reaches WooCommerce.
    #[tokio::test]
    async fn a_mark_committed_while_a_writer_retires_the_old_one_survives() {
        let store = Store::temporary().unwrap();
        let t = Tables::new(&store);
        let mut first = Staged::new(&t, "s1");
        let planned = first.mark_dirty(7).unwrap();
        first.commit().await.unwrap();

        let mut writer = Staged::new(&t, "s1");
        writer.clear_dirty(7, planned);

        let mut withdrawal = Staged::new(&t, "s1");
        let newer = withdrawal.mark_dirty(7).unwrap();
        withdrawal.commit().await.unwrap();
        writer.commit().await.unwrap();

        assert!(newer > planned);
        assert_eq!(t.dirty.get(&mk("s1", 7)).unwrap(), Some(newer));
    }

    /// Cleared and marked again, a product must not get back the generation a slow writer may
    /// still hold from the first mark (it restarted at 1 before).
    #[tokio::test]
    async fn a_product_marked_again_after_a_clear_gets_a_newer_generation() {
        let store = Store::temporary().unwrap();
        let t = Tables::new(&store);
        let mut st = Staged::new(&t, "s1");
        let first = st.mark_dirty(3).unwrap();
        st.commit().await.unwrap();

        let mut clear = Staged::new(&t, "s1");
        clear.clear_dirty(3, first);
        clear.commit().await.unwrap();
        assert_eq!(t.dirty.get(&mk("s1", 3)).unwrap(), None);

        let mut again = Staged::new(&t, "s1");
        let second = again.mark_dirty(3).unwrap();
        again.commit().await.unwrap();
        assert!(second > first);

        // The slow writer holding the first generation retires nothing.
        let mut slow = Staged::new(&t, "s1");
        slow.clear_dirty(3, first);
        slow.commit().await.unwrap();
        assert_eq!(t.dirty.get(&mk("s1", 3)).unwrap(), Some(second));

        // A new process (the store reopened) keeps counting upwards.
        let reopened = Tables::new(&store);
        let mut st = Staged::new(&reopened, "s1");
        assert!(st.mark_dirty(3).unwrap() > second);
    }
}
