//! Which WooCommerce orders the importer takes (SPEC §3.2 "Eligible when"), and in which
//! statuses WooCommerce has reduced its own stock for an order.

use duellsync_settings::StoreSettings;
use duellsync_woo_model::Order;

/// Why an order is not imported (now). The message is for people: it names the setting that
/// decided and the value that did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// `sync_orders = false` for the store.
    #[error("order sync is off for this store (sync_orders = false)")]
    SyncOff,
    /// The order's status is not one of `fetch_statuses`.
    #[error("status `{status}` is not in fetch_statuses {wanted:?}")]
    Status { status: String, wanted: Vec<String> },
    /// Created before `orders_from_date`.
    #[error("created {created} (UTC), before orders_from_date {from}")]
    BeforeFromDate { created: String, from: String },
    /// `orders_from_date` is set but the order carries no creation date to compare.
    #[error("has no date_created_gmt to compare with orders_from_date {from}")]
    NoCreationDate { from: String },
    /// Number (or id, when the number is not numeric) below `orders_from_number`.
    #[error("number `{number}` is below orders_from_number {from}")]
    BelowFromNumber { number: String, from: i64 },
    /// Read fresh before its import, the order no longer exists in WooCommerce (deleted for
    /// good).
    #[error("the order no longer exists in WooCommerce (deleted before it was imported)")]
    Gone,
}

impl SkipReason {
    /// Short machine-readable code, for metrics labels and the sync log.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::SyncOff => "sync_off",
            SkipReason::Status { .. } => "status",
            SkipReason::BeforeFromDate { .. } | SkipReason::NoCreationDate { .. } => "from_date",
            SkipReason::BelowFromNumber { .. } => "from_number",
            SkipReason::Gone => "gone",
        }
    }
}

/// Whether the importer may take `order` under `settings`: `sync_orders` on, status in
/// `fetch_statuses`, created (UTC) at or after `orders_from_date`, number at or above
/// `orders_from_number`. "Not imported before" is the importer's own ledger, not checked here.
///
/// Order numbers are strings that plugins may change (`"WC-1001"`): they are compared
/// numerically when they parse as an integer, otherwise the order id is compared instead.
pub fn eligibility(order: &Order, settings: &StoreSettings) -> Result<(), SkipReason> {
    if !settings.sync_orders {
        return Err(SkipReason::SyncOff);
    }
    let status = crate::status::normalize_status(&order.status);
    if !settings
        .fetch_statuses
        .iter()
        .any(|s| crate::status::normalize_status(s) == status)
    {
        return Err(SkipReason::Status {
            status: order.status.clone(),
            wanted: settings.fetch_statuses.clone(),
        });
    }
    if let Some(from) = settings.orders_from_unix() {
        let from_text = settings.orders_from_date.clone().unwrap_or_default();
        match order.date_created_gmt {
            None => return Err(SkipReason::NoCreationDate { from: from_text }),
            Some(created) => {
                if created.assume_utc().unix_timestamp() < from {
                    return Err(SkipReason::BeforeFromDate {
                        created: duellsync_woo_model::de::format_datetime(created),
                        from: from_text,
                    });
                }
            }
        }
    }
    if let Some(from) = settings.orders_from_number {
        let comparable = match order.number.trim().parse::<i64>() {
            Ok(n) => n,
            // A non-numeric number ("WC-1001"): the id is the only ordered identity left.
            Err(_) => i64::try_from(order.id).unwrap_or(i64::MAX),
        };
        if comparable < from {
            return Err(SkipReason::BelowFromNumber {
                number: order.number.clone(),
                from,
            });
        }
    }
    Ok(())
}

/// Whether WooCommerce has reduced its stock for an order in this status: at checkout it reduces
/// stock when the order becomes `processing`, `completed` or `on-hold`, and restores it when the
/// order is cancelled (a `pending` or `failed` order has not taken stock).
pub fn takes_woo_stock(status: &str) -> bool {
    matches!(
        status.trim().to_ascii_lowercase().as_str(),
        "processing" | "completed" | "on-hold"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &str) -> StoreSettings {
        let text = format!(
            r#"
id = "s1"
{extra}
[woo]
url = "http://shop.test"
[duell]
client_number = "012345"
"#
        );
        toml::from_str(&text).expect("test settings parse")
    }

    fn order(status: &str, number: &str, id: u64, created: Option<&str>) -> Order {
        let mut v = serde_json::json!({
            "id": id, "number": number, "status": status,
        });
        if let Some(c) = created {
            v["date_created_gmt"] = serde_json::Value::String(c.to_owned());
        }
        serde_json::from_value(v).expect("order json")
    }

    #[test]
    fn a_processing_order_is_eligible_by_default() {
        let s = settings("");
        assert_eq!(eligibility(&order("processing", "7", 7, None), &s), Ok(()));
    }

    #[test]
    fn sync_off_skips_every_order() {
        let s = settings("sync_orders = false");
        let r = eligibility(&order("processing", "7", 7, None), &s);
        assert_eq!(r, Err(SkipReason::SyncOff));
        assert!(r.unwrap_err().to_string().contains("sync_orders"));
    }

    #[test]
    fn statuses_outside_fetch_statuses_are_skipped_with_the_setting_named() {
        let s = settings(r#"fetch_statuses = ["processing", "wc-on-hold"]"#);
        assert_eq!(eligibility(&order("on-hold", "1", 1, None), &s), Ok(()));
        let err = eligibility(&order("pending", "1", 1, None), &s).unwrap_err();
        assert_eq!(err.code(), "status");
        assert!(err.to_string().contains("pending") && err.to_string().contains("fetch_statuses"));
    }

    #[test]
    fn orders_created_before_the_from_date_are_skipped() {
        let s = settings(r#"orders_from_date = "2026-01-31""#);
        assert_eq!(
            eligibility(
                &order("processing", "1", 1, Some("2026-01-31T00:00:00")),
                &s
            ),
            Ok(())
        );
        let err = eligibility(
            &order("processing", "1", 1, Some("2026-01-30T23:59:59")),
            &s,
        )
        .unwrap_err();
        assert_eq!(err.code(), "from_date");
        let err = eligibility(&order("processing", "1", 1, None), &s).unwrap_err();
        assert!(matches!(err, SkipReason::NoCreationDate { .. }));
    }

    #[test]
    fn numbers_compare_numerically_and_fall_back_to_the_id() {
        let s = settings("orders_from_number = 100");
        assert_eq!(
            eligibility(&order("processing", "100", 5, None), &s),
            Ok(())
        );
        assert_eq!(
            eligibility(&order("processing", "1000", 5, None), &s),
            Ok(())
        );
        // "99" < "100" numerically even though "99" > "100" as text.
        assert!(eligibility(&order("processing", "99", 500, None), &s).is_err());
        // Not numeric: the id decides.
        assert_eq!(
            eligibility(&order("processing", "WC-1", 150, None), &s),
            Ok(())
        );
        assert!(eligibility(&order("processing", "WC-999", 50, None), &s).is_err());
    }

    #[test]
    fn woo_holds_stock_only_in_paid_or_held_statuses() {
        for s in ["processing", "completed", "on-hold", "Processing"] {
            assert!(takes_woo_stock(s), "{s}");
        }
        for s in [
            "pending",
            "failed",
            "cancelled",
            "refunded",
            "checkout-draft",
            "",
        ] {
            assert!(!takes_woo_stock(s), "{s}");
        }
    }
}
