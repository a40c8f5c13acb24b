//! How WooCommerce order statuses may move when the engine writes them (SPEC §3.3): never
//! backwards, never over a final decision (`completed`, `cancelled`, `refunded` are set by a
//! person or a payment gateway and are theirs).
//!
//! Statuses are ordered by how far an order has come:
//!
//! | rank | statuses |
//! |---|---|
//! | 0 | `pending`, `failed`, `checkout-draft`, `auto-draft` (not paid) |
//! | 1 | `on-hold` (awaiting payment confirmation or stock) |
//! | 2 | `processing`, and any status a plugin added (fulfilment steps come after payment) |
//! | 3 | `completed`, `cancelled` (final) |
//! | 4 | `refunded` (final; can follow either of the above) |

/// A status as WooCommerce writes it: trimmed, lowercase, without the `wc-` post-status prefix.
pub fn normalize_status(status: &str) -> String {
    let s = status.trim().to_ascii_lowercase();
    match s.strip_prefix("wc-") {
        Some(rest) => rest.to_owned(),
        None => s,
    }
}

/// How far an order in `status` has come (see the table above).
pub fn status_rank(status: &str) -> u8 {
    match normalize_status(status).as_str() {
        "pending" | "failed" | "checkout-draft" | "auto-draft" => 0,
        "on-hold" => 1,
        "completed" | "cancelled" => 3,
        "refunded" => 4,
        _ => 2,
    }
}

/// `completed`, `cancelled`, `refunded`: decisions the engine never overrides.
pub fn is_final_status(status: &str) -> bool {
    matches!(
        normalize_status(status).as_str(),
        "completed" | "cancelled" | "refunded"
    )
}

/// Statuses in which an order that was not imported yet will never be: its stock hold, if any,
/// can be released.
pub fn is_abandoned_status(status: &str) -> bool {
    matches!(
        normalize_status(status).as_str(),
        "cancelled" | "refunded" | "failed"
    )
}

/// What to do about moving a WooCommerce order from `current` to `wanted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMove {
    /// Write `wanted`.
    Write,
    /// The order is in `wanted` already: nothing to write.
    AlreadyThere,
    /// `wanted` is behind `current`: record a conflict (`backwards`).
    Backwards,
    /// `current` is a final decision of a person or gateway: record a conflict
    /// (`final_status_set_by_person`).
    FinalDecision,
}

impl StatusMove {
    /// Conflict code for the sync log (`OrderStatusConflict.code`), when the move is refused.
    pub fn conflict_code(self) -> Option<&'static str> {
        match self {
            StatusMove::Backwards => Some("backwards"),
            StatusMove::FinalDecision => Some("final_status_set_by_person"),
            StatusMove::Write | StatusMove::AlreadyThere => None,
        }
    }
}

/// Whether the engine may move an order from `current` to `wanted`.
pub fn plan_status_move(current: &str, wanted: &str) -> StatusMove {
    let (c, w) = (normalize_status(current), normalize_status(wanted));
    if c == w {
        StatusMove::AlreadyThere
    } else if is_final_status(&c) {
        StatusMove::FinalDecision
    } else if status_rank(&w) < status_rank(&c) {
        StatusMove::Backwards
    } else {
        StatusMove::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn completing_a_processing_order_is_written() {
        assert_eq!(
            plan_status_move("processing", "completed"),
            StatusMove::Write
        );
        assert_eq!(plan_status_move("on-hold", "processing"), StatusMove::Write);
        assert_eq!(
            plan_status_move("processing", "cancelled"),
            StatusMove::Write
        );
        assert_eq!(
            plan_status_move("wc-processing", "Completed"),
            StatusMove::Write
        );
    }

    #[test]
    fn final_decisions_are_never_overridden() {
        for current in ["completed", "cancelled", "refunded"] {
            for wanted in [
                "processing",
                "completed",
                "cancelled",
                "refunded",
                "on-hold",
            ] {
                let m = plan_status_move(current, wanted);
                if current == wanted {
                    assert_eq!(m, StatusMove::AlreadyThere);
                } else {
                    assert_eq!(m, StatusMove::FinalDecision, "{current} -> {wanted}");
                    assert_eq!(m.conflict_code(), Some("final_status_set_by_person"));
                }
            }
        }
    }

    #[test]
    fn moving_backwards_is_refused() {
        assert_eq!(
            plan_status_move("processing", "on-hold"),
            StatusMove::Backwards
        );
        assert_eq!(
            plan_status_move("processing", "pending"),
            StatusMove::Backwards
        );
        assert_eq!(
            plan_status_move("shipped", "on-hold"),
            StatusMove::Backwards
        );
        assert_eq!(
            plan_status_move("processing", "on-hold").conflict_code(),
            Some("backwards")
        );
    }

    #[test]
    fn plugin_statuses_rank_with_processing() {
        assert_eq!(plan_status_move("processing", "shipped"), StatusMove::Write);
        assert_eq!(plan_status_move("shipped", "completed"), StatusMove::Write);
        assert!(!is_final_status("shipped"));
    }

    #[test]
    fn abandoned_statuses_are_cancelled_refunded_and_failed() {
        assert!(is_abandoned_status("cancelled") && is_abandoned_status("failed"));
        assert!(is_abandoned_status("refunded") && !is_abandoned_status("pending"));
    }

    fn status() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "pending",
                "processing",
                "on-hold",
                "completed",
                "cancelled",
                "refunded",
                "failed",
                "checkout-draft",
                "wc-completed",
                "Processing",
            ])
            .prop_map(str::to_owned),
            "[a-z-]{1,17}",
        ]
    }

    proptest! {
        #[test]
        fn a_write_never_leaves_a_final_status_or_goes_back(a in status(), b in status()) {
            let m = plan_status_move(&a, &b);
            if m == StatusMove::Write {
                prop_assert!(!is_final_status(&a));
                prop_assert!(status_rank(&b) >= status_rank(&a));
                prop_assert_ne!(normalize_status(&a), normalize_status(&b));
            }
            prop_assert_eq!(m == StatusMove::AlreadyThere, normalize_status(&a) == normalize_status(&b));
        }

        #[test]
        fn no_write_cycle_crosses_ranks(a in status(), b in status()) {
            // If a -> b is written and raises the rank, b -> a is never written.
            if plan_status_move(&a, &b) == StatusMove::Write && status_rank(&b) > status_rank(&a) {
                prop_assert_ne!(plan_status_move(&b, &a), StatusMove::Write);
            }
        }

        #[test]
        fn following_writes_reaches_a_final_status_at_most_once(path in prop::collection::vec(status(), 1..12)) {
            // Apply every allowed move along a path: once final, the order never moves again.
            let mut current = "pending".to_owned();
            let mut finals = 0;
            for wanted in &path {
                if plan_status_move(&current, wanted) == StatusMove::Write {
                    prop_assert!(!is_final_status(&current));
                    current = normalize_status(wanted);
                    if is_final_status(&current) {
                        finals += 1;
                    }
                }
            }
            prop_assert!(finals <= 1);
        }
    }
}
