//! Units web orders hold on products (SPEC §3.1 "Stock"): WooCommerce takes its own stock when
//! an order is paid, DUELL's stock shows the sale only later. Which readings of DUELL's stock
//! already reflect an order decides whether its units are subtracted from them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Where an order's units are on their way into DUELL's stock. Stored as its event number
/// (1, 2, 3), as the state always held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// WooCommerce took the units; DUELL does not know the order.
    Received = 1,
    /// In DUELL as a customer order whose stock is drawn only at the packing slip.
    ImportedUndrawn = 2,
    /// DUELL's stock reflects the order (drawn, a sales order, a stock deduction), or it was
    /// cancelled.
    Released = 3,
}

impl Phase {
    /// From the event's number (`StockHoldChanged.phase`); `None` for anything else.
    pub fn from_i32(n: i32) -> Option<Phase> {
        match n {
            1 => Some(Phase::Received),
            2 => Some(Phase::ImportedUndrawn),
            3 => Some(Phase::Released),
            _ => None,
        }
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*self as i32)
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i32::deserialize(d)?;
        Phase::from_i32(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown stock hold phase {n}")))
    }
}

/// One order's hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hold {
    pub phase: Phase,
    /// (DUELL product id, units).
    pub lines: Vec<(i64, Decimal)>,
    /// The instant (Unix ms) from which DUELL's stock reflects the phase: stock read before it
    /// does not show the import (phase 2) or the release (phase 3) yet. 0 = every reading.
    pub effective_at_ms: i64,
}

impl Hold {
    fn units_of(&self, product: i64) -> Decimal {
        self.lines
            .iter()
            .filter(|(p, _)| *p == product)
            .map(|(_, q)| *q)
            .sum()
    }

    /// Whether this hold's units are still missing from a reading taken at `observed_ms`.
    ///
    /// - received: always (DUELL knows nothing of the order);
    /// - imported, not drawn: when DUELL's stock field does not net reservations
    ///   (`subtract_undrawn`), until the release; otherwise only for readings taken before
    ///   DUELL applied the order — a reading taken earlier still shows the units;
    /// - released: only for readings taken before DUELL applied the release.
    pub fn counts_for(&self, observed_ms: i64, subtract_undrawn: bool) -> bool {
        match self.phase {
            Phase::Received => true,
            Phase::ImportedUndrawn => subtract_undrawn || observed_ms < self.effective_at_ms,
            Phase::Released => observed_ms < self.effective_at_ms,
        }
    }

    /// Whether the hold counts for that reading only because the reading predates the moment
    /// DUELL applied the order: a fresh reading decides, and until it comes, a lower stock
    /// computed from the old one may be the same units subtracted twice.
    pub fn counts_only_until_fresh(&self, observed_ms: i64, subtract_undrawn: bool) -> bool {
        match self.phase {
            Phase::Received => false,
            Phase::ImportedUndrawn => !subtract_undrawn && observed_ms < self.effective_at_ms,
            Phase::Released => observed_ms < self.effective_at_ms,
        }
    }

    /// Whether a reading taken at `observed_ms` is too old to show this hold's latest phase,
    /// so a fresh one must be asked for (DUELL does not publish an unchanged number by itself).
    pub fn needs_fresh_reading(&self, observed_ms: i64, subtract_undrawn: bool) -> bool {
        self.effective_at_ms > 0 && self.counts_only_until_fresh(observed_ms, subtract_undrawn)
    }
}

/// Units held on `product` for stock observed at `observed_ms`.
pub fn held_units(
    holds: &[Hold],
    product: i64,
    observed_ms: i64,
    subtract_undrawn: bool,
) -> Decimal {
    holds
        .iter()
        .filter(|h| h.counts_for(observed_ms, subtract_undrawn))
        .map(|h| h.units_of(product))
        .fold(Decimal::ZERO, |a, b| a.saturating_add(b))
}

/// Whether some hold on `product` counts for this reading only until a fresh reading arrives
/// (see [`Hold::counts_only_until_fresh`]), with its effective instant.
pub fn unconfirmed_since(
    holds: &[Hold],
    product: i64,
    observed_ms: i64,
    subtract_undrawn: bool,
) -> Option<i64> {
    holds
        .iter()
        .filter(|h| h.lines.iter().any(|(p, _)| *p == product))
        .filter(|h| h.counts_only_until_fresh(observed_ms, subtract_undrawn))
        .map(|h| h.effective_at_ms)
        .max()
}

/// Moves an order's hold to a new phase. Phases only move forward (a late or repeated event of
/// an earlier phase changes nothing); a repeated "received" may correct the lines (the order
/// was edited). An event without lines keeps the ones known. Returns `None` when nothing
/// changes.
pub fn advance(
    old: Option<&Hold>,
    phase: Phase,
    lines: Vec<(i64, Decimal)>,
    effective_at_ms: i64,
) -> Option<Hold> {
    let mut lines = lines;
    if let Some(old) = old {
        if phase < old.phase || (phase == old.phase && phase != Phase::Received) {
            return None;
        }
        if lines.is_empty() {
            lines = old.lines.clone();
        }
        if phase == Phase::Received && old.lines == lines {
            return None;
        }
    }
    Some(Hold {
        phase,
        lines,
        effective_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn hold(phase: Phase, qty: Decimal, at: i64) -> Hold {
        Hold {
            phase,
            lines: vec![(7, qty), (8, dec!(1))],
            effective_at_ms: at,
        }
    }

    #[test]
    fn received_orders_always_hold_their_units() {
        let holds = vec![
            hold(Phase::Received, dec!(2), 0),
            hold(Phase::Received, dec!(1), 0),
        ];
        assert_eq!(held_units(&holds, 7, 1_000, true), dec!(3));
        assert_eq!(held_units(&holds, 7, 1_000, false), dec!(3));
        assert_eq!(held_units(&holds, 9, 1_000, true), dec!(0));
    }

    #[test]
    fn undrawn_customer_orders_hold_until_released_when_duell_does_not_net_them() {
        let holds = vec![hold(Phase::ImportedUndrawn, dec!(2), 5_000)];
        assert_eq!(held_units(&holds, 7, 1_000, true), dec!(2));
        assert_eq!(held_units(&holds, 7, 9_000, true), dec!(2));
    }

    #[test]
    fn undrawn_customer_orders_hold_until_a_reading_taken_after_the_import_when_duell_nets_them() {
        // The case: subtract_undrawn_customer_orders = false, the stock read before the
        // import still shows the units WooCommerce sold.
        let holds = vec![hold(Phase::ImportedUndrawn, dec!(2), 5_000)];
        assert_eq!(held_units(&holds, 7, 4_999, false), dec!(2));
        assert_eq!(held_units(&holds, 7, 5_000, false), dec!(0));
        assert!(holds[0].needs_fresh_reading(4_999, false));
        assert!(!holds[0].needs_fresh_reading(5_000, false));
        assert!(!holds[0].needs_fresh_reading(4_999, true));
    }

    #[test]
    fn a_release_counts_only_for_stock_read_after_it() {
        let holds = vec![hold(Phase::Released, dec!(2), 5_000)];
        assert_eq!(held_units(&holds, 7, 4_999, true), dec!(2));
        assert_eq!(held_units(&holds, 7, 5_000, true), dec!(0));
        assert_eq!(unconfirmed_since(&holds, 7, 4_999, true), Some(5_000));
        assert_eq!(unconfirmed_since(&holds, 7, 5_000, true), None);
    }

    #[test]
    fn phases_only_move_forward() {
        let r = advance(None, Phase::Received, vec![(7, dec!(1))], 0).unwrap();
        let i = advance(Some(&r), Phase::ImportedUndrawn, vec![], 10).unwrap();
        assert_eq!(i.lines, r.lines, "lines are kept");
        assert!(advance(Some(&i), Phase::Received, vec![(7, dec!(1))], 0).is_none());
        assert!(advance(Some(&i), Phase::ImportedUndrawn, vec![], 11).is_none());
        assert!(advance(Some(&r), Phase::Received, vec![(7, dec!(1))], 0).is_none());
        assert!(advance(Some(&r), Phase::Received, vec![(7, dec!(2))], 0).is_some());
    }

    /// One step of the world the property test plays: what DUELL does and what the publisher
    /// hears, in any order.
    #[derive(Debug, Clone)]
    enum Delivery {
        /// A reading of DUELL's stock field taken at this instant.
        Reading(i64),
        /// The order's hold reaches a phase.
        Hold(Phase),
    }

    proptest! {
        /// Issue 13, defect 2: over any interleaving of readings and hold changes (delivered in
        /// any order, each reading stamped with the moment it was taken), once the publisher
        /// knows the order, the stock it publishes never exceeds DUELL's free stock after the
        /// order, in every setting.
        #[test]
        fn published_stock_never_exceeds_duells_stock_after_the_order(
            start in 1i64..20,
            qty in 1i64..5,
            subtract_undrawn in any::<bool>(),
            // When DUELL applied the import (reservation) and the draw, ms.
            import_at in 1_000i64..5_000,
            draw_gap in 1i64..5_000,
            // How much later than the real moment the release/import instant is stamped.
            stamp_lag in 0i64..2_000,
            readings in prop::collection::vec(0i64..12_000, 1..8),
            order in prop::collection::vec(any::<u16>(), 12),
            // (a random key per delivery: the order they reach the publisher in)
            cancelled in any::<bool>(),
        ) {
            let qty_d = Decimal::from(qty);
            let draw_at = import_at + draw_gap;
            // DUELL's stock field at instant t. Without `subtract_undrawn` the field nets
            // reservations (from the import on); with it, the units leave at the draw. A
            // cancelled order leaves the field as it was.
            let duell_at = |t: i64| -> Decimal {
                let gone = if cancelled {
                    false
                } else if subtract_undrawn {
                    t >= draw_at
                } else {
                    t >= import_at
                };
                Decimal::from(start) - if gone { qty_d } else { Decimal::ZERO }
            };
            let mut deliveries: Vec<Delivery> = readings.iter().map(|t| Delivery::Reading(*t)).collect();
            deliveries.push(Delivery::Hold(Phase::Received));
            if !cancelled {
                deliveries.push(Delivery::Hold(Phase::ImportedUndrawn));
            }
            deliveries.push(Delivery::Hold(Phase::Released));
            // Shuffle by the random keys.
            let mut keyed: Vec<(u16, Delivery)> = deliveries
                .into_iter()
                .enumerate()
                .map(|(i, d)| (order[i % order.len()], d))
                .collect();
            keyed.sort_by_key(|(k, _)| *k);

            let mut hold: Option<Hold> = None;
            let mut reading: Option<(i64, Decimal)> = None;
            let mut knows_order = false;
            for (_, d) in keyed {
                match d {
                    Delivery::Reading(t) => {
                        // The publisher keeps the newest reading by the time it was taken.
                        if reading.map(|(at, _)| t >= at).unwrap_or(true) {
                            reading = Some((t, duell_at(t)));
                        }
                    }
                    Delivery::Hold(phase) => {
                        knows_order = true;
                        let effective = match phase {
                            Phase::Received => 0,
                            Phase::ImportedUndrawn => import_at + stamp_lag,
                            Phase::Released if cancelled => 0,
                            Phase::Released => {
                                (if subtract_undrawn { draw_at } else { import_at }) + stamp_lag
                            }
                        };
                        if let Some(h) = advance(hold.as_ref(), phase, vec![(7, qty_d)], effective) {
                            hold = Some(h);
                        }
                    }
                }
                let Some((at, value)) = reading else { continue };
                if !knows_order {
                    continue;
                }
                let holds: Vec<Hold> = hold.iter().cloned().collect();
                let held = held_units(&holds, 7, at, subtract_undrawn);
                let published = crate::publishable_stock(value, held);
                let free_after = (if cancelled { start } else { start - qty }).max(0);
                prop_assert!(
                    published <= free_after,
                    "published {published} > {free_after} (reading {value} at {at}, hold {hold:?})"
                );
            }
        }
    }
}
