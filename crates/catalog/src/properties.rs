//! Properties of the catalogue rules: stock is never offered that is not there, and one write
//! converges (after WooCommerce applied what [`update_write`] or [`create_write`] asked for,
//! nothing is left to write).

use duellsync_events::v1::{CustomField, DuellProduct};
use duellsync_woo_model::{Attribute, ManageStock, MetaData, Product, ProductWrite};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;

/// WooCommerce as far as these rules see it: it stores what a write sends, titles and
/// attribute texts HTML-escaped (`&` reads back `&amp;`), and reads it back as a [`Product`].
fn apply(p: &mut Product, w: &ProductWrite) {
    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    let date = |c: &Clearable<time::PrimitiveDateTime>| match c {
        Clearable::Set(d) => Some(*d),
        Clearable::Clear => None,
    };
    let price = |c: &Clearable<Decimal>| match c {
        Clearable::Set(d) => Some(*d),
        Clearable::Clear => None,
    };
    if let Some(n) = &w.name {
        p.name = escape(n);
    }
    if let Some(d) = &w.description {
        p.description = d.clone();
    }
    if let Some(s) = &w.status {
        p.status = s.clone();
    }
    if let Some(s) = &w.sku {
        p.sku = s.clone();
    }
    if let Some(c) = &w.regular_price {
        p.regular_price = price(c);
    }
    if let Some(c) = &w.sale_price {
        p.sale_price = price(c);
    }
    if let Some(c) = &w.date_on_sale_from_gmt {
        p.date_on_sale_from_gmt = date(c);
    }
    if let Some(c) = &w.date_on_sale_to_gmt {
        p.date_on_sale_to_gmt = date(c);
    }
    if let Some(m) = w.manage_stock {
        p.manage_stock = if m { ManageStock::Yes } else { ManageStock::No };
    }
    if let Some(q) = w.stock_quantity {
        p.stock_quantity = Some(q);
    }
    if let Some(list) = &w.attributes {
        p.attributes = list
            .iter()
            .map(|a| Attribute {
                name: escape(&a.name),
                options: a.options.iter().flatten().map(|o| escape(o)).collect(),
                option: a.option.as_deref().map(escape),
                variation: a.variation.unwrap_or(false),
                visible: a.visible.unwrap_or(false),
                position: a.position.unwrap_or(0),
                ..Attribute::default()
            })
            .collect();
    }
    if let Some(meta) = &w.meta_data {
        for m in meta {
            p.meta_data.retain(|x| x.key != m.key);
            if let Some(v) = &m.value {
                p.meta_data.push(MetaData {
                    key: m.key.clone(),
                    value: v.clone(),
                    ..MetaData::default()
                });
            }
        }
    }
}

/// Texts without `;`, so no HTML entity can be formed by accident; with `&`, `<`, `>`,
/// Norwegian letters and runs of spaces.
fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9æøåÆØÅ&<> .,'-]{0,16}"
}

/// DUELL custom field names, including the name the variant attribute uses.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![4 => text(), 1 => Just(VARIANT_ATTRIBUTE.to_owned())]
}

fn decimal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..10_000_000, 0u32..4).prop_map(|(n, s)| Decimal::new(n, s).to_string()),
        Just(String::new()),
        Just("garbage".to_owned()),
        Just("-5".to_owned()),
        Just("79228162514264337593543950335".to_owned()),
    ]
}

/// Unix seconds DUELL's date texts can name.
fn moment() -> impl Strategy<Value = i64> {
    prop_oneof![
        NOW - 400 * DAY..NOW + 400 * DAY,
        -377_705_116_800i64..253_402_300_799,
    ]
}

fn duell_time(t: Option<i64>) -> String {
    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn duell_product() -> impl Strategy<Value = DuellProduct> {
    (
        (1i64..1_000_000, "[A-Z0-9-]{1,8}", text(), text()),
        (
            decimal_text(),
            prop::sample::select(vec!["25", "15", "12", "0", "", "7.5", "-100", "100"]),
            decimal_text(),
        ),
        (
            prop::option::of(moment()),
            prop::option::of(moment()),
            prop::collection::vec((field_name(), text()), 0..4),
            any::<bool>(),
            prop_oneof![Just(0i64), 1i64..100],
        ),
    )
        .prop_map(
            |(
                (id, number, name, description),
                (price, vat, special),
                (from, to, fields, is_parent, parent),
            )| {
                DuellProduct {
                    product_id: id,
                    product_number: number,
                    name,
                    description,
                    price_inc_vat: price,
                    vat_rate_percent: vat.to_owned(),
                    special_price: special,
                    special_from: duell_time(from),
                    special_to: duell_time(to),
                    custom_fields: fields
                        .into_iter()
                        .map(|(name, value)| CustomField { name, value })
                        .collect(),
                    is_parent,
                    parent_product_id: parent,
                    ..DuellProduct::default()
                }
            },
        )
}

fn store_settings() -> impl Strategy<Value = StoreSettings> {
    prop::collection::vec(any::<bool>(), 6).prop_map(|b| {
        let on = |i: usize| if b[i] { "true" } else { "false" };
        let text = format!(
            r#"
id = "s1"
update_products = {}
sync_prices = {}
sync_stock = {}
sync_attributes = {}
sync_new_categories = {}
create_products = {}
[woo]
url = "http://shop.test"
[duell]
client_number = "012345"
"#,
            on(0),
            on(1),
            on(2),
            on(3),
            on(4),
            on(5)
        );
        toml::from_str(&text).unwrap()
    })
}

fn price_rules() -> impl Strategy<Value = PriceRules> {
    (any::<bool>(), 0u32..5).prop_map(|(prices_include_tax, decimals)| PriceRules {
        prices_include_tax,
        decimals,
    })
}

/// Whatever WooCommerce may hold for a product before the engine writes.
fn woo_product() -> impl Strategy<Value = Product> {
    (
        text(),
        prop::sample::select(vec!["publish", "draft", "private", "trash", ""]),
        prop::option::of((0i64..1_000_000).prop_map(|c| Decimal::new(c, 2))),
        prop::option::of((0i64..1_000_000).prop_map(|c| Decimal::new(c, 2))),
        prop::option::of(moment()),
        prop::option::of(any::<i64>()),
        any::<bool>(),
        prop::collection::vec((text(), text()), 0..3),
    )
        .prop_map(
            |(name, status, regular, sale, sale_to, stock, managed, attrs)| {
                let dt = |t: Option<i64>| {
                    t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                        .map(|d| time::PrimitiveDateTime::new(d.date(), d.time()))
                };
                Product {
                    id: 70,
                    name,
                    status: status.to_owned(),
                    regular_price: regular,
                    sale_price: sale,
                    date_on_sale_to_gmt: dt(sale_to),
                    stock_quantity: stock,
                    manage_stock: if managed {
                        ManageStock::Yes
                    } else {
                        ManageStock::No
                    },
                    attributes: attrs
                        .into_iter()
                        .map(|(name, o)| Attribute {
                            name,
                            options: vec![o],
                            ..Attribute::default()
                        })
                        .collect(),
                    ..Product::default()
                }
            },
        )
}

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

proptest! {
    #[test]
    fn published_stock_is_never_negative_nor_more_than_duell_has(
        units in any::<i64>(),
        frac in 0u32..6,
        held in prop_oneof![Just(Decimal::ZERO), (0i64..1_000_000).prop_map(Decimal::from), (0i64..1_000_000, 0u32..3).prop_map(|(n, s)| Decimal::new(n, s))],
    ) {
        let stock = Decimal::new(units, frac);
        let published = publishable_stock(stock, held);
        prop_assert!(published >= 0);
        let floor = i64::try_from(stock.floor()).unwrap_or(if stock.is_sign_negative() { i64::MIN } else { i64::MAX });
        prop_assert!(published <= floor.max(0));
        // More units held never publishes more.
        prop_assert!(publishable_stock(stock, held + Decimal::ONE) <= published);
    }

    #[test]
    fn publishable_stock_takes_any_decimal(stock in any::<(u32, u32, u32, bool, u32)>(), held in any::<(u32, u32, u32, bool, u32)>()) {
        let d = |(lo, mid, hi, neg, scale): (u32, u32, u32, bool, u32)| Decimal::from_parts(lo, mid, hi, neg, scale % 29);
        let published = publishable_stock(d(stock), d(held));
        prop_assert!(published >= 0);
    }

    #[test]
    fn one_update_write_converges(
        event in duell_product(),
        settings in store_settings(),
        prices in price_rules(),
        stock in prop::option::of((-50i64..10_000, 0u32..3).prop_map(|(n, s)| Decimal::new(n, s))),
        held in (0i64..20).prop_map(Decimal::from),
        mut woo in woo_product(),
        parent_name in text(),
    ) {
        let product = ProductData::from_event(&event, &jiff::tz::TimeZone::UTC);
        let d = desired(&product, stock, held, &settings, prices, Some(&parent_name), NOW);
        let state = WooState::from_product(&woo);
        if let Some((fields, w)) = update_write(&d, &state, NOW) {
            prop_assert!(!fields.is_empty());
            apply(&mut woo, &w);
            let after = WooState::from_product(&woo);
            let again = update_write(&d, &after, NOW);
            prop_assert!(again.is_none(), "wrote {:?}, still differs in {:?}", fields, again.map(|a| a.0));
        }
    }

    #[test]
    fn a_created_product_needs_no_update(
        event in duell_product(),
        settings in store_settings(),
        prices in price_rules(),
        stock in prop::option::of((0i64..10_000).prop_map(Decimal::from)),
        parent_name in text(),
        variant_options in prop::collection::vec(text(), 0..3),
    ) {
        let product = ProductData::from_event(&event, &jiff::tz::TimeZone::UTC);
        let d = desired(&product, stock, Decimal::ZERO, &settings, prices, Some(&parent_name), NOW);
        let w = create_write(&d, &product, &settings, &[3], None, &variant_options);
        let mut woo = Product { id: 70, ..Product::default() };
        apply(&mut woo, &w);
        let state = WooState::from_product(&woo);
        prop_assert_eq!(state.duell_id, Some(product.product_id));
        let again = update_write(&d, &state, NOW);
        prop_assert!(again.is_none(), "still differs in {:?}", again.map(|a| a.0));
    }
}
