//! Deciding what to write for a product: the desired state from the DUELL projection, compared
//! with what WooCommerce holds.

use duellsync_catalog::{
    create_write, desired, update_write, variant_attribute, Desired, ProductData, Shape, Source,
    WooState, VARIANT_ATTRIBUTE,
};
use duellsync_woo::{AttributeWrite, ImageWrite, ProductWrite};
use rust_decimal::Decimal;

use crate::state::{held_units, Hold, Link};
use crate::worker::StoreCtx;

/// One write the publisher intends to make.
#[derive(Debug, Clone)]
pub(crate) enum Planned {
    /// Nothing to do: WooCommerce already holds what DUELL wants.
    Nothing,
    /// Not possible yet (a variation whose parent is not in WooCommerce yet).
    Wait,
    Create {
        write: Box<ProductWrite>,
        /// Category path to resolve to ids before sending ("" = none).
        category_path: String,
        /// Image URL to attach ("" = none).
        image_url: String,
        /// Parent's WooCommerce id for a variation.
        parent_woo_id: u64,
        fields: Vec<&'static str>,
    },
    Update {
        write: Box<ProductWrite>,
        image_url: String,
        parent_woo_id: u64,
        fields: Vec<&'static str>,
        /// The product becomes hidden (true) or visible again (false) with this write.
        hides: Option<bool>,
    },
    /// Move to WooCommerce's trash (`hidden_product_action = "trash"`).
    Trash { woo_id: u64 },
}

impl Planned {
    pub fn fields(&self) -> &[&'static str] {
        match self {
            Planned::Create { fields, .. } | Planned::Update { fields, .. } => fields,
            Planned::Trash { .. } => &["status"],
            _ => &[],
        }
    }
}

/// Everything `plan` needs to know about one product.
pub(crate) struct PlanInput<'a> {
    pub id: i64,
    pub source: &'a Source,
    pub link: Option<&'a Link>,
    pub holds: &'a [Hold],
    /// Parent's data and link, for a variant.
    pub parent: Option<(&'a ProductData, Option<&'a Link>)>,
    /// Options of a variable product's variants (for a parent).
    pub variant_options: Vec<String>,
    pub now_unix: i64,
}

pub(crate) fn desired_for(ctx: &StoreCtx, input: &PlanInput<'_>, product: &ProductData) -> Desired {
    let s = &ctx.settings;
    let held = held_units(
        input.holds,
        input.id,
        input.source.stock_observed_ms,
        s.stock.subtract_undrawn_customer_orders,
    );
    desired(
        product,
        input.source.stock,
        held,
        s,
        ctx.prices(),
        input.parent.map(|(p, _)| p.name.as_str()),
        input.now_unix,
    )
}

/// The write (if any) that brings WooCommerce to DUELL's state for one product.
pub(crate) fn plan(ctx: &StoreCtx, input: &PlanInput<'_>) -> Planned {
    let s = &ctx.settings;
    let Some(product) = input.source.product.as_ref() else {
        // Only stock seen so far: nothing to create from.
        return Planned::Nothing;
    };
    let parent_woo_id = match input.parent {
        Some((_, Some(l))) => l.woo.woo_id,
        Some((_, None)) => 0,
        None => 0,
    };
    if input.source.withdrawn {
        let Some(link) = input.link else {
            return Planned::Nothing;
        };
        if s.hidden_product_action == duellsync_settings::HiddenAction::Trash
            && !product.is_variant()
        {
            if link.woo.status == "trash" {
                return Planned::Nothing;
            }
            return Planned::Trash {
                woo_id: link.woo.woo_id,
            };
        }
        let status = if product.is_variant() {
            "private"
        } else {
            s.hidden_product_action.as_str()
        };
        if link.woo.status == status {
            return Planned::Nothing;
        }
        let write = ProductWrite {
            id: Some(link.woo.woo_id),
            status: Some(status.to_owned()),
            ..ProductWrite::default()
        };
        return Planned::Update {
            write: Box::new(write),
            image_url: String::new(),
            parent_woo_id: link.woo.parent_id,
            fields: vec!["status"],
            hides: Some(true),
        };
    }

    let mut d = desired_for(ctx, input, product);
    match input.link {
        None => {
            if !s.create_products {
                return Planned::Nothing;
            }
            if product.is_variant() && parent_woo_id == 0 {
                return Planned::Wait;
            }
            let write = create_write(&d, product, s, &[], None, &input.variant_options);
            let mut fields = vec!["create"];
            if d.stock.is_some() {
                fields.push("stock_quantity");
            }
            Planned::Create {
                write: Box::new(write),
                category_path: if s.sync_new_categories && d.shape != Shape::Variation {
                    product.category_path.clone()
                } else {
                    String::new()
                },
                image_url: if s.sync_images {
                    product.image_url.clone()
                } else {
                    String::new()
                },
                parent_woo_id,
                fields,
            }
        }
        Some(link) => {
            let mut hides = None;
            if link.hidden_by_us {
                d.status = Some(if d.shape == Shape::Variation {
                    "publish".to_owned()
                } else {
                    s.new_product_status.as_str().to_owned()
                });
                hides = Some(false);
            }
            let mut woo = link.woo.clone();
            if d.shape == Shape::Variable {
                // Compare the variant option list too; the attribute list is replaced as a
                // whole, so a change means resending custom and variant attributes.
                woo.variant_options.sort();
            }
            let (mut fields, mut write) = match update_write(&d, &woo, input.now_unix) {
                Some((f, w)) => (f, w),
                None => (
                    Vec::new(),
                    ProductWrite {
                        id: Some(link.woo.woo_id),
                        ..ProductWrite::default()
                    },
                ),
            };
            if d.shape == Shape::Variable {
                let mut want = input.variant_options.clone();
                want.sort();
                if want != woo.variant_options {
                    let mut attrs: Vec<AttributeWrite> = match &d.attributes {
                        Some(a) => custom_attribute_writes(a),
                        None => custom_attribute_writes(&link.woo.attributes),
                    };
                    attrs.retain(|a| a.name != VARIANT_ATTRIBUTE);
                    attrs.push(variant_attribute(&input.variant_options));
                    write.attributes = Some(attrs);
                    fields.push("variant_options");
                }
            }
            if link.woo.duell_id != Some(input.id) {
                // Adopted by SKU: tag it so the link survives a lost state.
                write.meta_data = Some(vec![duellsync_woo::MetaWrite {
                    key: duellsync_catalog::META_DUELL_ID.to_owned(),
                    value: Some(serde_json::Value::String(input.id.to_string())),
                }]);
                fields.push("link");
            }
            let mut image_url = String::new();
            if s.sync_images && link.woo.image_ids.is_empty() && !product.image_url.is_empty() {
                image_url = product.image_url.clone();
                fields.push("image");
            }
            if fields.is_empty() {
                return Planned::Nothing;
            }
            Planned::Update {
                write: Box::new(write),
                image_url,
                parent_woo_id: link.woo.parent_id,
                fields,
                hides,
            }
        }
    }
}

fn custom_attribute_writes(attrs: &[(String, String)]) -> Vec<AttributeWrite> {
    attrs
        .iter()
        .enumerate()
        .map(|(i, (n, v))| AttributeWrite {
            name: n.clone(),
            options: Some(vec![v.clone()]),
            visible: Some(true),
            variation: Some(false),
            position: Some(i as i64),
            ..AttributeWrite::default()
        })
        .collect()
}

/// Attaches an image: an attachment already uploaded for this URL is reused by id; otherwise
/// WooCommerce downloads it (once: the caller records the attachment id it gets back).
pub(crate) fn attach_image(
    write: &mut ProductWrite,
    shape: Shape,
    url: &str,
    uploaded: Option<u64>,
) {
    let img = match uploaded {
        Some(id) => ImageWrite {
            id: Some(id),
            ..ImageWrite::default()
        },
        None => ImageWrite {
            src: Some(url.to_owned()),
            ..ImageWrite::default()
        },
    };
    if shape == Shape::Variation {
        write.image = Some(img);
    } else {
        write.images = Some(vec![img]);
    }
}

/// Whether WooCommerce's state differs from DUELL's in fields the settings leave to
/// WooCommerce (reported by full syncs, never corrected).
pub(crate) fn drift_left_alone(
    ctx: &StoreCtx,
    product: &ProductData,
    stock: Option<Decimal>,
    held: Decimal,
    woo: &WooState,
    now: i64,
) -> Vec<&'static str> {
    let mut all = ctx.settings.as_ref().clone();
    all.update_products = true;
    all.sync_prices = true;
    all.sync_stock = true;
    all.sync_attributes = true;
    let full = desired(product, stock, held, &all, ctx.prices(), None, now);
    let owned: Vec<&'static str> = {
        let d = desired(product, stock, held, &ctx.settings, ctx.prices(), None, now);
        update_write(&d, woo, now)
            .map(|(f, _)| f)
            .unwrap_or_default()
    };
    update_write(&full, woo, now)
        .map(|(f, _)| f.into_iter().filter(|f| !owned.contains(f)).collect())
        .unwrap_or_default()
}
