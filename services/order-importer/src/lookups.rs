//! What recent DUELL look-ups found: products by number and customers by phone or e-mail.
//!
//! Without it every order asks DUELL again for the same buyer and the same popular products (in
//! the bench, three of an order's seven calls), and those reads count against DUELL's rate
//! limit like the writes that matter. A found answer is reused for `importer.lookup_cache_ttl`
//! (`0s` turns this off). Only found answers are kept: a miss is what leads to a creation or a
//! park, and those must see DUELL as it is now.
//!
//! It is a hint, not state: it lives in memory (a restart starts empty), it never decides
//! whether an order is written (the ledger does), and what could make an entry wrong forgets
//! it — a `ProductObserved` of the product (by number or id: a renumbered product is observed
//! under its new number), and DUELL refusing a write, after which every entry of the store is
//! dropped so the retry resolves afresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::resolve::Resolved;

/// Entries kept at most; past it the expired ones go, then everything (the next orders fill it
/// again with what they need).
const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone)]
enum Found {
    Product(Resolved),
    Customer(i64),
}

#[derive(Debug)]
pub(crate) struct Lookups {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Found)>>,
    /// Counts the forgettings: an answer whose look-up started before one is not kept (DUELL
    /// may have changed between the answer and the observation that forgot the old one).
    generation: AtomicU64,
}

fn product_key(number: &str) -> String {
    format!("p\0{number}")
}

fn customer_key(key: &str) -> String {
    format!("c\0{key}")
}

impl Lookups {
    pub fn new(ttl: Duration) -> Self {
        Lookups {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Take it before a look-up and hand it to `found_*` with the answer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Found)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str, now: Instant) -> Option<Found> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.entries();
        match entries.get(key) {
            Some((at, found)) if now.saturating_duration_since(*at) < self.ttl => {
                Some(found.clone())
            }
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: String, found: Found, since: u64, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        // Checked under the lock the forgetting takes, so none slips in between.
        if self.generation() != since {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now, found));
    }

    /// The product DUELL showed for this number, if looked up recently.
    pub fn product(&self, number: &str) -> Option<Resolved> {
        match self.get(&product_key(number), Instant::now()) {
            Some(Found::Product(r)) => Some(r),
            _ => None,
        }
    }

    pub fn found_product(&self, number: &str, resolved: &Resolved, since: u64) {
        self.put(
            product_key(number),
            Found::Product(resolved.clone()),
            since,
            Instant::now(),
        );
    }

    /// The customer found recently for `key` (the buyer's phone and e-mail).
    pub fn customer(&self, key: &str) -> Option<i64> {
        match self.get(&customer_key(key), Instant::now()) {
            Some(Found::Customer(id)) => Some(id),
            _ => None,
        }
    }

    pub fn found_customer(&self, key: &str, id: i64, since: u64) {
        self.put(
            customer_key(key),
            Found::Customer(id),
            since,
            Instant::now(),
        );
    }

    /// DUELL changed a product: every answer that names its number (in any case: WooCommerce
    /// SKUs are case-insensitive) or its id is forgotten.
    pub fn product_changed(&self, number: &str, product_id: i64) {
        let number = number.trim();
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|key, (_, found)| match found {
            Found::Product(r) => {
                let looked_up = key.strip_prefix("p\0").unwrap_or_default();
                !(r.duell_product_id == product_id
                    || (!number.is_empty()
                        && (looked_up.trim().eq_ignore_ascii_case(number)
                            || r.product_number.trim().eq_ignore_ascii_case(number))))
            }
            Found::Customer(_) => true,
        });
    }

    /// DUELL refused a write: what the order referred to may be gone.
    pub fn forget_all(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(id: i64, number: &str) -> Resolved {
        Resolved {
            duell_product_id: id,
            product_number: number.into(),
            remark: None,
        }
    }

    #[test]
    fn found_answers_are_reused_until_they_expire() {
        let l = Lookups::new(Duration::from_secs(60));
        let t0 = Instant::now();
        l.put(
            product_key("A-1"),
            Found::Product(resolved(7, "A-1")),
            0,
            t0,
        );
        l.put(
            customer_key("customer:phone:12345678"),
            Found::Customer(3),
            0,
            t0,
        );
        let later = t0 + Duration::from_secs(59);
        assert!(
            matches!(l.get(&product_key("A-1"), later), Some(Found::Product(r)) if r.duell_product_id == 7)
        );
        assert!(matches!(
            l.get(&customer_key("customer:phone:12345678"), later),
            Some(Found::Customer(3))
        ));
        let expired = t0 + Duration::from_secs(60);
        assert!(l.get(&product_key("A-1"), expired).is_none());
        assert!(l
            .get(&customer_key("customer:phone:12345678"), expired)
            .is_none());
        // An expired entry is gone, not just hidden.
        assert!(l.entries().is_empty());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let l = Lookups::new(Duration::ZERO);
        l.found_product("A-1", &resolved(7, "A-1"), 0);
        l.found_customer("customer:phone:12345678", 3, 0);
        assert!(l.product("A-1").is_none());
        assert!(l.customer("customer:phone:12345678").is_none());
        assert!(l.entries().is_empty());
    }

    #[test]
    fn a_changed_product_is_forgotten_by_number_in_any_case_or_by_id() {
        let l = Lookups::new(Duration::from_secs(600));
        l.found_product("abc-1", &resolved(7, "ABC-1"), 0);
        l.found_product("B-2", &resolved(8, "B-2"), 0);
        l.found_product("C-3", &resolved(9, "C-3"), 0);
        l.found_customer("customer:phone:12345678", 3, 0);
        l.product_changed(" ABC-1 ", 0);
        assert!(l.product("abc-1").is_none());
        // Renumbered: observed under its new number, known here by its id.
        l.product_changed("B-2-NEW", 8);
        assert!(l.product("B-2").is_none());
        assert_eq!(l.product("C-3"), Some(resolved(9, "C-3")));
        assert_eq!(l.customer("customer:phone:12345678"), Some(3));
        l.forget_all();
        assert!(l.product("C-3").is_none());
        assert!(l.customer("customer:phone:12345678").is_none());
    }

    #[test]
    fn an_answer_from_before_a_forgetting_is_not_kept() {
        let l = Lookups::new(Duration::from_secs(600));
        let since = l.generation();
        // The product changes while the look-up is on its way back.
        l.product_changed("A-1", 7);
        l.found_product("A-1", &resolved(7, "A-1"), since);
        assert!(l.product("A-1").is_none());
        let since = l.generation();
        l.forget_all();
        l.found_customer("k", 3, since);
        assert!(l.customer("k").is_none());
        l.found_customer("k", 3, l.generation());
        assert_eq!(l.customer("k"), Some(3));
    }

    #[test]
    fn a_full_cache_makes_room() {
        let l = Lookups::new(Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES {
            l.put(
                customer_key(&i.to_string()),
                Found::Customer(i as i64),
                0,
                t0,
            );
        }
        l.put(customer_key("new"), Found::Customer(-1), 0, t0);
        assert!(l.entries().len() <= MAX_ENTRIES);
        assert!(matches!(
            l.get(&customer_key("new"), t0),
            Some(Found::Customer(-1))
        ));
    }
}
