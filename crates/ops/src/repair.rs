//! `syncctl repair duplicates --store S [--dry-run]`: WooCommerce products that one DUELL
//! product has more than once (a create repeated while the first was still running, WooCommerce's
//! SKU check not being atomic; or a copy made by hand).
//!
//! Groups the store's products by the DUELL id in their meta data (`_duell_product_id`); an
//! untagged product with the SKU of such a group belongs to it too. In each group the oldest
//! product is kept — the one the catalogue publisher writes to — unless it is an empty variable
//! product and a younger copy has variations; every other copy is moved to WooCommerce's trash
//! (a `DELETE` without `force`, so a person can restore it). Nothing else is changed. With
//! `--dry-run` it only prints what it would do.

use std::collections::BTreeMap;
use std::time::Duration;

use duellsync_clients as clients;
use duellsync_woo::{RetryPolicy, WooClient};
use serde_json::json;

use crate::ui::Tone;
use crate::{check_store_id, usage, Ctx, Outcome};

#[derive(Debug, clap::Subcommand)]
pub enum RepairCommand {
    /// Trash the younger copies of WooCommerce products a DUELL product has more than once.
    Duplicates {
        /// The store.
        #[arg(long)]
        store: String,
        /// Print what would be trashed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// One WooCommerce product as the repair sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Copy {
    pub id: u64,
    pub sku: String,
    pub duell_id: Option<i64>,
    pub kind: String,
    pub variations: usize,
}

/// One DUELL product with several WooCommerce products.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub duell_id: i64,
    pub sku: String,
    pub keep: u64,
    pub trash: Vec<u64>,
}

/// The DUELL id the catalogue publisher stores in a product's meta data.
fn duell_id_of(p: &duellsync_woo::Product) -> Option<i64> {
    p.meta("_duell_product_id").and_then(|v| match v {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    })
}

/// Which copies to keep and which to trash.
pub(crate) fn plan(products: &[Copy]) -> Vec<Group> {
    let mut by_duell: BTreeMap<i64, Vec<&Copy>> = BTreeMap::new();
    let mut sku_owner: BTreeMap<String, i64> = BTreeMap::new();
    for p in products {
        if let Some(d) = p.duell_id {
            by_duell.entry(d).or_default().push(p);
            if !p.sku.trim().is_empty() {
                sku_owner.entry(p.sku.trim().to_lowercase()).or_insert(d);
            }
        }
    }
    for p in products.iter().filter(|p| p.duell_id.is_none()) {
        if let Some(d) = sku_owner.get(&p.sku.trim().to_lowercase()) {
            by_duell.entry(*d).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    for (duell_id, mut copies) in by_duell {
        if copies.len() < 2 {
            continue;
        }
        copies.sort_by_key(|c| c.id);
        let empty = |c: &Copy| c.kind == "variable" && c.variations == 0;
        let keep = copies.iter().find(|c| !empty(c)).unwrap_or(&copies[0]).id;
        out.push(Group {
            duell_id,
            sku: copies[0].sku.clone(),
            keep,
            trash: copies
                .iter()
                .map(|c| c.id)
                .filter(|id| *id != keep)
                .collect(),
        });
    }
    out
}

pub async fn run(ctx: &Ctx, cmd: RepairCommand) -> anyhow::Result<Outcome> {
    let RepairCommand::Duplicates { store, dry_run } = cmd;
    check_store_id(&store)?;
    let settings = ctx.store(&store)?;
    let mut config = clients::woo_config(&settings).map_err(usage)?;
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(10),
    };
    let woo = WooClient::new(config).map_err(|e| usage(e.to_string()))?;
    let mut products = Vec::new();
    let mut scan = woo.scan_products(&["id", "sku", "type", "meta_data", "variations"], 100);
    while let Some(page) = scan.next_page().await.map_err(|e| {
        anyhow::anyhow!("reading WooCommerce: {e}; run `syncctl test --store {store}`")
    })? {
        products.extend(page.into_iter().map(|p| Copy {
            id: p.id,
            duell_id: duell_id_of(&p),
            sku: p.sku,
            kind: p.kind,
            variations: p.variations.len(),
        }));
    }
    let groups = plan(&products);
    let mut trashed = Vec::new();
    let mut failed = Vec::new();
    if !dry_run {
        for g in &groups {
            for id in &g.trash {
                match woo.delete_product(*id, false).await {
                    Ok(_) => trashed.push(*id),
                    // Already in the trash: what we wanted.
                    Err(e) if e.status() == Some(410) => trashed.push(*id),
                    Err(e) => failed.push((*id, e.to_string())),
                }
            }
        }
    }
    if ctx.ui.json {
        ctx.ui.json_out(&json!({
            "ok": failed.is_empty(),
            "store": store,
            "dry_run": dry_run,
            "products_read": products.len(),
            "duplicates": groups.iter().map(|g| json!({
                "duell_product_id": g.duell_id,
                "sku": g.sku,
                "keep": g.keep,
                "trash": g.trash,
            })).collect::<Vec<_>>(),
            "trashed": trashed,
            "failed": failed.iter().map(|(id, e)| json!({"id": id, "error": e})).collect::<Vec<_>>(),
        }));
    } else {
        let ui = &ctx.ui;
        if groups.is_empty() {
            ui.line(format!(
                "{} no duplicates among the {} products of store {store}",
                ui.paint(Tone::Good, "✔"),
                products.len()
            ));
        }
        for g in &groups {
            let list: Vec<String> = g.trash.iter().map(u64::to_string).collect();
            ui.line(format!(
                "SKU {} (DUELL {}): keep {}, {} {}",
                g.sku,
                g.duell_id,
                g.keep,
                if dry_run { "would trash" } else { "trash" },
                list.join(", ")
            ));
        }
        for (id, e) in &failed {
            ui.line(format!(
                "{} product {id} not trashed: {e}",
                ui.paint(Tone::Bad, "✖")
            ));
        }
        if dry_run && !groups.is_empty() {
            ui.note("dry run: nothing was changed; run without --dry-run to trash the copies");
        }
    }
    Ok(Outcome::from_ok(failed.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, sku: &str, duell: Option<i64>, kind: &str, variations: usize) -> Copy {
        Copy {
            id,
            sku: sku.into(),
            duell_id: duell,
            kind: kind.into(),
            variations,
        }
    }

    #[test]
    fn the_oldest_copy_is_kept_and_the_others_trashed() {
        let groups = plan(&[
            c(10, "A", Some(1), "simple", 0),
            c(11, "B", Some(2), "simple", 0),
            c(12, "A", Some(1), "simple", 0),
            c(13, "a", None, "simple", 0),
        ]);
        assert_eq!(
            groups,
            vec![Group {
                duell_id: 1,
                sku: "A".into(),
                keep: 10,
                trash: vec![12, 13],
            }]
        );
    }

    #[test]
    fn an_empty_variable_copy_gives_way_to_one_with_variations() {
        let groups = plan(&[
            c(20, "V", Some(5), "variable", 0),
            c(21, "V", Some(5), "variable", 3),
            c(22, "V", Some(5), "variable", 0),
        ]);
        assert_eq!(groups[0].keep, 21);
        assert_eq!(groups[0].trash, vec![20, 22]);
    }

    #[test]
    fn products_of_other_duell_products_are_left_alone() {
        assert!(plan(&[
            c(1, "X", Some(1), "simple", 0),
            c(2, "Y", Some(2), "simple", 0),
            c(3, "Z", None, "simple", 0),
        ])
        .is_empty());
    }
}
