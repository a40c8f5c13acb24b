//! The one decision of the catalogue publisher, as a pure function: given DUELL's product, the
//! store's settings, the stock holds and what WooCommerce holds, what must be written
//! ([`plan`]). The publisher gathers the inputs from its state and maps the answer to
//! WooCommerce requests (category ids, image uploads, batches); nothing here does IO.

use duellsync_settings::{HiddenAction, StoreSettings};
use duellsync_woo_model::{AttributeWrite, ImageWrite, MetaWrite, ProductWrite};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::holds::{held_units, unconfirmed_since, Hold};
use crate::{
    create_write, desired, update_write, variant_attribute, Desired, PriceRules, ProductData,
    Shape, Source, TaxClasses, WooState, META_DUELL_ID, VARIANT_ATTRIBUTE,
};

/// How long a lower stock that may count a released order twice waits for the fresh reading
/// the publisher asked for (see [`PlanInput::holds`]). A reading comes within a DUELL round
/// trip; if none comes, the lower value is written (never offer what may not be there).
pub const FRESH_READING_GRACE_MS: i64 = 10_000;

/// The WooCommerce side of a DUELL product, as the publisher knows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub woo: WooState,
    /// We set the product to the hidden status; restoring visibility is ours to do too.
    pub hidden_by_us: bool,
    /// A full sync saw WooCommerce's stock go down since the publisher last knew it (most
    /// likely a web order whose webhook has not arrived yet): the stock is not raised until
    /// a new DUELL fact about the product (a reading, a hold) says what to write.
    #[serde(default)]
    pub keep_lower_stock: bool,
}

/// One write the publisher intends to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
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

    /// Whether this plan writes to WooCommerce.
    pub fn writes(&self) -> bool {
        !matches!(self, Planned::Nothing | Planned::Wait)
    }
}

/// Everything [`plan`] needs to know about one product.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub id: i64,
    pub source: &'a Source,
    pub link: Option<&'a Link>,
    /// Every hold of the store, read when the write is planned (a hold that changes between
    /// a reconciliation and the write is seen by the write).
    pub holds: &'a [Hold],
    /// The parent's facts and link, for a variant.
    pub parent: Option<(&'a Source, Option<&'a Link>)>,
    /// Options of a variable product's variants (for a parent).
    pub variant_options: Vec<String>,
    pub settings: &'a StoreSettings,
    pub prices: PriceRules,
    /// The shop's tax class per VAT rate (written with the prices).
    pub tax: &'a TaxClasses,
    pub now_ms: i64,
}

impl PlanInput<'_> {
    fn held(&self) -> Decimal {
        held_units(
            self.holds,
            self.id,
            self.source.stock_observed_ms,
            self.settings.stock.subtract_undrawn_customer_orders,
        )
    }

    fn desired(&self, product: &ProductData) -> Desired {
        let parent_name = self
            .parent
            .and_then(|(s, _)| s.product.as_ref())
            .map(|p| p.name.as_str());
        let d = desired(
            &self.priced(product),
            self.source.stock,
            self.held(),
            self.settings,
            self.prices,
            parent_name,
            self.now_ms.div_euclid(1000),
        );
        self.with_tax_class(d, product, self.settings)
    }

    /// The product as its price is converted: at the VAT WooCommerce will add (which is DUELL's
    /// rate whenever a tax class carries it; see [`TaxClasses::applied_rate`]).
    fn priced<'p>(&self, product: &'p ProductData) -> std::borrow::Cow<'p, ProductData> {
        if !self.tax.enabled() {
            return std::borrow::Cow::Borrowed(product);
        }
        let rate = self.tax.applied_rate(product.vat_rate_percent);
        if rate == product.vat_rate_percent {
            std::borrow::Cow::Borrowed(product)
        } else {
            std::borrow::Cow::Owned(ProductData {
                vat_rate_percent: rate,
                ..product.clone()
            })
        }
    }

    /// The tax class belongs to the price: written when prices are.
    fn with_tax_class(
        &self,
        mut d: Desired,
        product: &ProductData,
        settings: &StoreSettings,
    ) -> Desired {
        if settings.sync_prices {
            d.tax_class = self
                .tax
                .class_for(product.vat_rate_percent)
                .map(str::to_owned);
        }
        d
    }
}

/// The write (if any) that brings WooCommerce to DUELL's state for one product.
pub fn plan(input: &PlanInput<'_>) -> Planned {
    let s = input.settings;
    let Some(product) = input.source.product.as_ref() else {
        // Only stock seen so far: nothing to create from.
        return Planned::Nothing;
    };
    let parent_link = input.parent.and_then(|(_, l)| l);
    let parent_woo_id = parent_link.map(|l| l.woo.woo_id).unwrap_or(0);
    let parent_withdrawn = input.parent.map(|(s, _)| s.withdrawn).unwrap_or(false);
    if input.source.withdrawn {
        return plan_withdrawn(input, product);
    }
    let now_unix = input.now_ms.div_euclid(1000);
    let mut d = input.desired(product);
    match input.link {
        None => {
            if !s.create_products {
                return Planned::Nothing;
            }
            if product.is_variant() && parent_woo_id == 0 {
                // Gone from the web shop with its parent; otherwise it waits for the parent.
                return if parent_withdrawn {
                    Planned::Nothing
                } else {
                    Planned::Wait
                };
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
            keep_stock_from_rising(input, link, &mut d);
            let mut woo = link.woo.clone();
            if d.shape == Shape::Variable {
                // Compare the variant option list too; the attribute list is replaced as a
                // whole, so a change means resending custom and variant attributes.
                woo.variant_options.sort();
            }
            let (mut fields, mut write) = match update_write(&d, &woo, now_unix) {
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
                write.meta_data = Some(vec![MetaWrite {
                    key: META_DUELL_ID.to_owned(),
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

/// Two reasons not to raise (or lower) WooCommerce's stock now, both waiting for a newer DUELL
/// fact instead:
/// - a full sync saw WooCommerce lower it ([`Link::keep_lower_stock`]): likely an order whose
///   webhook is on its way; raising it back could offer its units again;
/// - the target is lower only because a hold counts against a reading that predates the
///   moment DUELL applied the order (the reading may already show those units gone): writing
///   it would publish the same units subtracted twice, then the right value once the fresh
///   reading arrives — a lower-then-higher flap. Within [`FRESH_READING_GRACE_MS`] of that
///   moment the stock stays as it is.
fn keep_stock_from_rising(input: &PlanInput<'_>, link: &Link, d: &mut Desired) {
    let (Some(want), Some(have)) = (d.stock, link.woo.stock) else {
        return;
    };
    if !link.woo.manage_stock {
        return;
    }
    if link.keep_lower_stock && want > have {
        d.stock = Some(have);
        return;
    }
    if want < have {
        let since = unconfirmed_since(
            input.holds,
            input.id,
            input.source.stock_observed_ms,
            input.settings.stock.subtract_undrawn_customer_orders,
        );
        if let Some(at) = since {
            if input.now_ms < at.saturating_add(FRESH_READING_GRACE_MS) {
                d.stock = Some(have);
            }
        }
    }
}

fn plan_withdrawn(input: &PlanInput<'_>, product: &ProductData) -> Planned {
    let s = input.settings;
    let Some(link) = input.link else {
        return Planned::Nothing;
    };
    if s.hidden_product_action == HiddenAction::Trash && !product.is_variant() {
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
    Planned::Update {
        write: Box::new(write),
        image_url: String::new(),
        parent_woo_id: link.woo.parent_id,
        fields: vec!["status"],
        hides: Some(true),
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
pub fn attach_image(write: &mut ProductWrite, shape: Shape, url: &str, uploaded: Option<u64>) {
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

/// Whether a write makes WooCommerce download an image (a `src`): such a write is not
/// idempotent, every send makes a new media-library attachment.
pub fn downloads_image(write: &ProductWrite) -> bool {
    write
        .images
        .as_ref()
        .map(|v| v.iter().any(|i| i.src.is_some()))
        .unwrap_or(false)
        || write
            .image
            .as_ref()
            .map(|i| i.src.is_some())
            .unwrap_or(false)
}

/// The fields in which WooCommerce differs from DUELL although the settings leave them to
/// WooCommerce (reported by full syncs, never corrected).
pub fn drift_left_alone(input: &PlanInput<'_>, woo: &WooState) -> Vec<&'static str> {
    let Some(product) = input.source.product.as_ref() else {
        return Vec::new();
    };
    let now_unix = input.now_ms.div_euclid(1000);
    let held = input.held();
    let mut all = input.settings.clone();
    all.update_products = true;
    all.sync_prices = true;
    all.sync_stock = true;
    all.sync_attributes = true;
    let full = input.with_tax_class(
        desired(
            &input.priced(product),
            input.source.stock,
            held,
            &all,
            input.prices,
            None,
            now_unix,
        ),
        product,
        &all,
    );
    let owned: Vec<&'static str> = {
        let d = input.with_tax_class(
            desired(
                &input.priced(product),
                input.source.stock,
                held,
                input.settings,
                input.prices,
                None,
                now_unix,
            ),
            product,
            input.settings,
        );
        update_write(&d, woo, now_unix)
            .map(|(f, _)| f)
            .unwrap_or_default()
    };
    update_write(&full, woo, now_unix)
        .map(|(f, _)| f.into_iter().filter(|f| !owned.contains(f)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holds::Phase;
    use rust_decimal_macros::dec;

    fn settings(extra: &str) -> StoreSettings {
        let text = format!(
            "id = \"s1\"\n{extra}\n[woo]\nurl = \"http://shop.test\"\n[duell]\nclient_number = \"012345\"\n"
        );
        toml::from_str(&text).unwrap()
    }

    fn source(stock: i64, observed_ms: i64) -> Source {
        Source {
            product: Some(ProductData {
                product_id: 7,
                product_number: "K1".into(),
                name: "Kopp".into(),
                price_inc_vat: Some(dec!(100)),
                vat_rate_percent: dec!(25),
                ..ProductData::default()
            }),
            stock: Some(Decimal::from(stock)),
            stock_observed_ms: observed_ms,
            ..Source::default()
        }
    }

    fn link(stock: i64) -> Link {
        Link {
            woo: WooState {
                woo_id: 70,
                sku: "K1".into(),
                name: "Kopp".into(),
                description: "Kopp".into(),
                status: "publish".into(),
                regular_price: Some(dec!(100)),
                manage_stock: true,
                stock: Some(stock),
                duell_id: Some(7),
                ..WooState::default()
            },
            ..Link::default()
        }
    }

    fn input<'a>(
        src: &'a Source,
        link: Option<&'a Link>,
        holds: &'a [Hold],
        s: &'a StoreSettings,
        now_ms: i64,
    ) -> PlanInput<'a> {
        PlanInput {
            id: 7,
            source: src,
            link,
            holds,
            parent: None,
            variant_options: Vec::new(),
            settings: s,
            prices: PriceRules::default(),
            tax: &NO_TAXES,
            now_ms,
        }
    }

    static NO_TAXES: TaxClasses = TaxClasses::NONE;

    fn norway_taxes() -> TaxClasses {
        let rate = |pct: i64, class: &str| duellsync_woo_model::TaxRate {
            country: "NO".into(),
            rate: Some(Decimal::from(pct)),
            class: class.into(),
            ..Default::default()
        };
        TaxClasses::new(
            true,
            &[
                rate(25, "standard"),
                rate(15, "food"),
                rate(12, "reduced-rate"),
            ],
            "NO",
            &Default::default(),
        )
    }

    #[test]
    fn a_rate_no_class_carries_is_priced_at_the_rate_woocommerce_adds() {
        let taxes = norway_taxes();
        let s = settings("");
        let mut src = source(5, 1_000);
        if let Some(p) = src.product.as_mut() {
            p.vat_rate_percent = Decimal::from(6);
        }
        let mut i = input(&src, None, &[], &s, 2_000);
        i.tax = &taxes;
        i.prices = PriceRules {
            prices_include_tax: false,
            decimals: 2,
        };
        match plan(&i) {
            Planned::Create { write, .. } => {
                // 100 incl. the 25 % WooCommerce will add, not DUELL's 6 %.
                assert_eq!(
                    write.regular_price,
                    Some(duellsync_woo_model::Clearable::Set(dec!(80)))
                );
                assert_eq!(write.tax_class, None, "it keeps its class");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_product_gets_the_tax_class_of_its_vat_rate_with_its_price() {
        let taxes = norway_taxes();
        let s = settings("");
        let mut src = source(5, 1_000);
        if let Some(p) = src.product.as_mut() {
            p.vat_rate_percent = Decimal::from(15);
        }
        let mut i = input(&src, None, &[], &s, 2_000);
        i.tax = &taxes;
        match plan(&i) {
            Planned::Create { write, .. } => assert_eq!(write.tax_class.as_deref(), Some("food")),
            other => panic!("{other:?}"),
        }
        // In the standard class, the class is corrected; in its own, nothing is written.
        let l = link(5);
        i.link = Some(&l);
        match plan(&i) {
            Planned::Update { write, fields, .. } => {
                assert_eq!(write.tax_class.as_deref(), Some("food"));
                assert_eq!(fields, vec!["tax_class"]);
            }
            other => panic!("{other:?}"),
        }
        let mut l2 = l.clone();
        l2.woo.tax_class = "food".into();
        i.link = Some(&l2);
        assert_eq!(plan(&i), Planned::Nothing);
        // Prices left to WooCommerce: so is the class.
        let s = settings("sync_prices = false");
        let mut i = input(&src, None, &[], &s, 2_000);
        i.tax = &taxes;
        match plan(&i) {
            Planned::Create { write, .. } => assert_eq!(write.tax_class, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unchanged_product_is_not_written() {
        let s = settings("");
        let src = source(5, 1_000);
        let l = link(5);
        assert_eq!(
            plan(&input(&src, Some(&l), &[], &s, 2_000)),
            Planned::Nothing
        );
    }

    #[test]
    fn a_new_product_is_created_with_its_stock_minus_holds() {
        let s = settings("");
        let src = source(5, 1_000);
        let holds = vec![Hold {
            phase: Phase::Received,
            lines: vec![(7, dec!(2))],
            effective_at_ms: 0,
        }];
        match plan(&input(&src, None, &holds, &s, 2_000)) {
            Planned::Create { write, fields, .. } => {
                assert_eq!(write.stock_quantity, Some(3));
                assert!(fields.contains(&"create"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stock_lowered_by_a_hold_counted_against_a_reading_older_than_its_release_waits_for_a_fresh_reading(
    ) {
        // Issue 12 §6: DUELL drew the order (its stock 1 already shows it), the release is
        // stamped later than the reading: 1 − 1 = 0 would be followed by 1 once the fresh
        // reading arrives.
        let s = settings("");
        let src = source(1, 4_000);
        let holds = vec![Hold {
            phase: Phase::Released,
            lines: vec![(7, dec!(1))],
            effective_at_ms: 5_000,
        }];
        let l = link(1);
        assert_eq!(
            plan(&input(&src, Some(&l), &holds, &s, 5_100)),
            Planned::Nothing
        );
        // No fresh reading in time: the lower value is written after all.
        match plan(&input(
            &src,
            Some(&l),
            &holds,
            &s,
            5_000 + FRESH_READING_GRACE_MS,
        )) {
            Planned::Update { write, .. } => assert_eq!(write.stock_quantity, Some(0)),
            other => panic!("{other:?}"),
        }
        // The fresh reading decides.
        let fresh = source(1, 6_000);
        assert_eq!(
            plan(&input(&fresh, Some(&l), &holds, &s, 6_100)),
            Planned::Nothing
        );
    }

    #[test]
    fn a_stock_woocommerce_lowered_is_not_raised_until_a_new_fact_comes() {
        let s = settings("");
        let src = source(5, 1_000);
        let mut l = link(3);
        l.keep_lower_stock = true;
        assert_eq!(
            plan(&input(&src, Some(&l), &[], &s, 2_000)),
            Planned::Nothing
        );
        let lower = source(2, 1_500);
        match plan(&input(&lower, Some(&l), &[], &s, 2_000)) {
            Planned::Update { write, .. } => assert_eq!(write.stock_quantity, Some(2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_variant_waits_for_its_parent_unless_the_parent_is_gone() {
        let s = settings("");
        let mut parent = source(0, 0);
        parent.product.as_mut().unwrap().is_parent = true;
        let mut v = source(2, 0);
        v.product.as_mut().unwrap().parent_product_id = 1;
        let mut i = input(&v, None, &[], &s, 0);
        i.parent = Some((&parent, None));
        assert_eq!(plan(&i), Planned::Wait);
        parent.withdrawn = true;
        let mut i = input(&v, None, &[], &s, 0);
        i.parent = Some((&parent, None));
        assert_eq!(plan(&i), Planned::Nothing);
    }

    #[test]
    fn a_withdrawn_product_is_hidden_as_configured() {
        let s = settings("hidden_product_action = \"private\"");
        let mut src = source(1, 0);
        src.withdrawn = true;
        let l = link(1);
        match plan(&input(&src, Some(&l), &[], &s, 0)) {
            Planned::Update { write, hides, .. } => {
                assert_eq!(write.status.as_deref(), Some("private"));
                assert_eq!(hides, Some(true));
            }
            other => panic!("{other:?}"),
        }
        let s = settings("hidden_product_action = \"trash\"");
        assert_eq!(
            plan(&input(&src, Some(&l), &[], &s, 0)),
            Planned::Trash { woo_id: 70 }
        );
    }

    #[test]
    fn an_image_download_is_recognised() {
        let mut w = ProductWrite::default();
        attach_image(&mut w, Shape::Simple, "http://x/a.png", None);
        assert!(downloads_image(&w));
        let mut w = ProductWrite::default();
        attach_image(&mut w, Shape::Variation, "http://x/a.png", Some(4));
        assert!(!downloads_image(&w));
    }
}
