//! Orders: rendering (the §7.1 shape), REST create/update, status transitions with their side
//! effects (stock, dates, notes, captures), and notes.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::json::J;
use crate::obj;
use crate::products::{str_field, Ctx, Mode};
use crate::store::{
    dec, fmt_date, money, unrounded, Capture, FeeLine, Meta, Note, Order, OrderLine, OrderTotals,
    RateTaxes, ShippingLine, State, WpError,
};

/// Statuses of the 7.9 REST enum.
pub const STATUSES: &[&str] = &[
    "auto-draft",
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
    "checkout-draft",
];

const BILLING_KEYS: &[&str] = &[
    "first_name",
    "last_name",
    "company",
    "address_1",
    "address_2",
    "city",
    "state",
    "postcode",
    "country",
    "email",
    "phone",
];

fn label(status: &str) -> &str {
    match status {
        "pending" => "Pending payment",
        "processing" => "Processing",
        "on-hold" => "On hold",
        "completed" => "Completed",
        "cancelled" => "Cancelled",
        "refunded" => "Refunded",
        "failed" => "Failed",
        "checkout-draft" => "Draft",
        other => other,
    }
}

/// A new, empty order.
pub fn new_order(state: &mut State, now: i64, created_via: &str) -> Order {
    let id = state.post_id();
    let key: String = format!("wc_order_{:013x}", (id * 2_654_435_761) ^ (now as u64));
    Order {
        id,
        parent_id: 0,
        status: "pending".into(),
        currency: state.settings.currency.clone(),
        prices_include_tax: state.settings.prices_include_tax,
        created: now,
        modified: now,
        paid: None,
        completed: None,
        customer_id: 0,
        order_key: key.chars().take(22).collect(),
        billing: BILLING_KEYS
            .iter()
            .map(|k| (k.to_string(), Some(String::new())))
            .collect(),
        shipping: BILLING_KEYS
            .iter()
            .filter(|k| **k != "email")
            .map(|k| (k.to_string(), String::new()))
            .collect(),
        payment_method: String::new(),
        payment_method_title: String::new(),
        transaction_id: String::new(),
        created_via: created_via.into(),
        customer_note: String::new(),
        meta: Vec::new(),
        lines: Vec::new(),
        shipping_lines: Vec::new(),
        fee_lines: Vec::new(),
        coupon_lines: Vec::new(),
        tax_lines: Vec::new(),
        totals: OrderTotals::default(),
        refunds: Vec::new(),
        stock_reduced: false,
        trashed_from: None,
    }
}

fn line_sku(state: &State, l: &OrderLine) -> J {
    let pid = if l.variation_id > 0 {
        l.variation_id
    } else {
        l.product_id
    };
    match state.products.get(&pid) {
        Some(p) => J::from(p.sku.as_str()),
        None => J::Null,
    }
}

/// `taxes` of a line: `[{id, total, subtotal}]` with the unrounded amounts as strings;
/// `subtotal` is `""` for lines without a subtotal (shipping, fees).
fn taxes_j(total: &RateTaxes, subtotal: Option<&RateTaxes>) -> J {
    J::Arr(
        total
            .iter()
            .map(|(rate, t)| {
                let sub = match subtotal {
                    Some(st) => st
                        .iter()
                        .find(|(r, _)| r == rate)
                        .map(|(_, v)| unrounded(*v))
                        .unwrap_or_default(),
                    None => String::new(),
                };
                obj! { "id" => *rate, "total" => unrounded(*t), "subtotal" => sub }
            })
            .collect(),
    )
}

/// A percent as PHP's `json_encode` writes the float (`25`, `12.5`).
fn percent_j(d: Decimal) -> J {
    J::Raw(d.normalize().to_string())
}

fn currency_symbol(code: &str) -> &'static str {
    match code {
        "EUR" => "€",
        "NOK" | "SEK" | "DKK" => "kr",
        "GBP" => "£",
        _ => "$",
    }
}

/// Renders an order (view or edit context look the same for orders).
pub fn render_order(state: &State, ctx: &Ctx, o: &Order) -> J {
    let dp = state.settings.price_num_decimals;
    let m = |d: Decimal| J::Str(money(d, dp));
    let lines: Vec<J> = o
        .lines
        .iter()
        .map(|l| {
            let gone = !state
                .products
                .contains_key(&if l.variation_id > 0 { l.variation_id } else { l.product_id });
            let price = if l.quantity != 0 {
                l.total.checked_div(Decimal::from(l.quantity)).unwrap_or_default().round_dp(dp).normalize()
            } else {
                Decimal::ZERO
            };
            let mut meta: Vec<J> = l
                .meta
                .iter()
                .map(|mm| obj! { "id" => mm.id, "key" => mm.key.as_str(), "value" => J::from(&mm.value), "display_key" => mm.key.as_str(), "display_value" => J::from(&mm.value) })
                .collect();
            if meta.is_empty() && l.reduced_stock.is_none() {
                meta = Vec::new();
            }
            obj! {
                "id" => l.id,
                "name" => l.name.as_str(),
                "product_id" => if gone { 0 } else { l.product_id },
                "variation_id" => l.variation_id,
                "quantity" => l.quantity,
                "tax_class" => l.tax_class.as_str(),
                "subtotal" => m(l.subtotal),
                "subtotal_tax" => m(l.subtotal_tax),
                "total" => m(l.total),
                "total_tax" => m(l.total_tax),
                "taxes" => taxes_j(&l.taxes, Some(&l.subtotal_taxes)),
                "meta_data" => J::Arr(meta),
                "sku" => line_sku(state, l),
                "price" => J::Raw(price.to_string()),
                "image" => if gone { obj!{ "id" => 0i64, "src" => "" } } else { obj!{ "id" => "", "src" => "" } },
                "parent_name" => if l.variation_id > 0 { J::from(state.products.get(&l.product_id).map(|p| p.name.clone())) } else { J::Null },
            }
        })
        .collect();
    let t = &o.totals;
    let total = t.total;
    let payment_url = format!(
        "{}/checkout/order-pay/{}/?pay_for_order=true&key={}",
        ctx.home, o.id, o.order_key
    );
    let billing = J::Obj(
        o.billing
            .iter()
            .map(|(k, v)| (k.clone(), J::from(v.clone())))
            .collect(),
    );
    let shipping = J::Obj(
        o.shipping
            .iter()
            .map(|(k, v)| (k.clone(), J::from(v.as_str())))
            .collect(),
    );
    let needs_payment = matches!(o.status.as_str(), "pending" | "failed") && total > Decimal::ZERO;
    let mut j = obj! {
        "id" => o.id,
        "parent_id" => o.parent_id,
        "status" => o.status.as_str(),
        "currency" => o.currency.as_str(),
        "version" => "7.9.0",
        "prices_include_tax" => o.prices_include_tax,
        "date_created" => J::Str(fmt_date(o.created, ctx.offset)),
        "date_modified" => J::Str(fmt_date(o.modified, ctx.offset)),
        "discount_total" => m(t.discount_total),
        "discount_tax" => m(t.discount_tax),
        "shipping_total" => m(t.shipping_total),
        "shipping_tax" => m(t.shipping_tax),
        "cart_tax" => m(t.cart_tax),
        "total" => m(total),
        "total_tax" => m(t.total_tax),
        "customer_id" => o.customer_id,
        "order_key" => o.order_key.as_str(),
        "billing" => billing,
        "shipping" => shipping,
        "payment_method" => o.payment_method.as_str(),
        "payment_method_title" => o.payment_method_title.as_str(),
        "transaction_id" => o.transaction_id.as_str(),
        "customer_ip_address" => "",
        "customer_user_agent" => "",
        "created_via" => o.created_via.as_str(),
        "customer_note" => o.customer_note.as_str(),
        "date_completed" => J::from(o.completed.map(|t| fmt_date(t, ctx.offset))),
        "date_paid" => J::from(o.paid.map(|t| fmt_date(t, ctx.offset))),
        "cart_hash" => "",
        "number" => o.id.to_string(),
        "meta_data" => J::Arr(o.meta.iter().map(|mm| obj!{ "id" => mm.id, "key" => mm.key.as_str(), "value" => J::from(&mm.value) }).collect()),
        "line_items" => J::Arr(lines),
        "tax_lines" => J::Arr(o.tax_lines.iter().map(|tl| obj!{
            "id" => tl.id, "rate_code" => tl.rate_code.as_str(), "rate_id" => tl.rate_id, "label" => tl.label.as_str(),
            "compound" => tl.compound, "tax_total" => m(tl.tax_total), "shipping_tax_total" => m(tl.shipping_tax_total),
            "rate_percent" => percent_j(tl.rate_percent), "meta_data" => J::Arr(vec![]) }).collect()),
        "shipping_lines" => J::Arr(o.shipping_lines.iter().map(|s| obj!{
            "id" => s.id, "method_title" => s.method_title.as_str(), "method_id" => s.method_id.as_str(),
            "instance_id" => "", "total" => m(s.total), "total_tax" => m(s.total_tax), "taxes" => taxes_j(&s.taxes, None), "meta_data" => J::Arr(vec![]) }).collect()),
        "fee_lines" => J::Arr(o.fee_lines.iter().map(|f| obj!{
            "id" => f.id, "name" => f.name.as_str(), "tax_class" => f.tax_class.as_str(), "tax_status" => f.tax_status.as_str(),
            "amount" => money(f.total, dp), "total" => m(f.total), "total_tax" => m(f.total_tax), "taxes" => taxes_j(&f.taxes, None), "meta_data" => J::Arr(vec![]) }).collect()),
        "coupon_lines" => J::Arr(o.coupon_lines.iter().map(|c| obj!{
            "id" => c.id, "code" => c.code.as_str(), "discount" => m(c.discount), "discount_tax" => m(c.discount_tax), "meta_data" => J::Arr(vec![]) }).collect()),
        "refunds" => J::Arr(o.refunds.iter().map(|(id, reason, t)| obj!{ "id" => *id, "reason" => reason.as_str(), "total" => format!("-{}", money(*t, dp)) }).collect()),
        "payment_url" => payment_url,
        "is_editable" => matches!(o.status.as_str(), "pending" | "on-hold" | "auto-draft" | "checkout-draft"),
        "needs_payment" => needs_payment,
        "needs_processing" => true,
        "date_created_gmt" => J::Str(fmt_date(o.created, 0)),
        "date_modified_gmt" => J::Str(fmt_date(o.modified, 0)),
        "date_completed_gmt" => J::from(o.completed.map(|t| fmt_date(t, 0))),
        "date_paid_gmt" => J::from(o.paid.map(|t| fmt_date(t, 0))),
        "currency_symbol" => currency_symbol(&o.currency),
    };
    j.set(
        "_links",
        obj! {
            "self" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/orders/{}", ctx.home, ctx.version, o.id) }],
            "collection" => vec![obj!{ "href" => format!("{}/wp-json/wc/{}/orders", ctx.home, ctx.version) }],
        },
    );
    j
}

/// The grand total the order stores (what a payment gateway captures).
pub fn order_total(o: &Order) -> Decimal {
    o.totals.total
}

/// Renders a note.
pub fn render_note(ctx: &Ctx, n: &Note) -> J {
    let base = format!(
        "{}/wp-json/wc/{}/orders/{}",
        ctx.home, ctx.version, n.order_id
    );
    obj! {
        "id" => n.id,
        "author" => n.author.as_str(),
        "date_created" => J::Str(fmt_date(n.created, ctx.offset)),
        "date_created_gmt" => J::Str(fmt_date(n.created, 0)),
        "note" => n.note.as_str(),
        "customer_note" => n.customer_note,
        "_links" => obj!{
            "self" => vec![obj!{ "href" => format!("{base}/notes/{}", n.id) }],
            "collection" => vec![obj!{ "href" => format!("{base}/notes") }],
            "up" => vec![obj!{ "href" => base.clone() }],
        },
    }
}

/// Adds a note.
pub fn add_note(state: &mut State, order_id: u64, note: &str, customer: bool, now: i64) -> Note {
    let n = Note {
        id: state.next_comment_id,
        order_id,
        note: note.to_string(),
        customer_note: customer,
        author: "WooCommerce".into(),
        created: now,
    };
    state.next_comment_id += 1;
    state.notes.push(n.clone());
    n
}

/// Changes the status with WooCommerce's side effects. Returns the products whose stock
/// changed (they fire `product.updated`).
pub fn set_status(state: &mut State, o: &mut Order, new: &str, now: i64) -> Vec<u64> {
    let old = o.status.clone();
    if old == new {
        return Vec::new();
    }
    o.status = new.to_string();
    o.modified = now;
    let mut touched = Vec::new();
    add_note(
        state,
        o.id,
        &format!(
            "Order status changed from {} to {}.",
            label(&old),
            label(new)
        ),
        false,
        now,
    );
    if matches!(new, "processing" | "completed" | "on-hold") && !o.stock_reduced {
        touched.extend(reduce_stock(state, o, now));
    }
    if matches!(new, "processing" | "completed") && o.paid.is_none() {
        o.paid = Some(now);
    }
    if new == "completed" {
        o.completed = Some(now);
        state.captures.push(Capture {
            order_id: o.id,
            status: new.into(),
            total: order_total(o),
            at: now,
        });
    }
    if matches!(new, "cancelled" | "pending") && o.stock_reduced {
        touched.extend(restore_stock(state, o, now));
    }
    if new == "refunded" {
        let refunded = o
            .refunds
            .iter()
            .try_fold(Decimal::ZERO, |acc, r| acc.checked_add(r.2))
            .unwrap_or(Decimal::MAX);
        let remaining = order_total(o).checked_sub(refunded).unwrap_or_default();
        if remaining > Decimal::ZERO {
            let id = state.post_id();
            o.refunds
                .push((id, "Order fully refunded.".into(), remaining));
            add_note(
                state,
                o.id,
                &format!(
                    "Order status set to refunded. To return funds to the customer you will need to issue a refund through your payment gateway. ({})",
                    money(remaining, state.settings.price_num_decimals)
                ),
                false,
                now,
            );
        }
    }
    touched
}

fn stock_target(state: &State, l: &OrderLine) -> Option<u64> {
    if l.variation_id > 0 {
        let v = state.products.get(&l.variation_id)?;
        if v.manage_stock {
            return Some(v.id);
        }
        let parent = state.products.get(&v.parent_id)?;
        return parent.manage_stock.then_some(parent.id);
    }
    let p = state.products.get(&l.product_id)?;
    p.manage_stock.then_some(p.id)
}

fn reduce_stock(state: &mut State, o: &mut Order, now: i64) -> Vec<u64> {
    o.stock_reduced = true;
    if !state.settings.manage_stock {
        return Vec::new();
    }
    let mut changes = Vec::new();
    let mut touched = Vec::new();
    for i in 0..o.lines.len() {
        let qty = o.lines[i].quantity;
        let Some(target) = stock_target(state, &o.lines[i]) else {
            continue;
        };
        let notify = state.settings.notify_no_stock_amount;
        if let Some(p) = state.products.get_mut(&target) {
            let before = p.stock_quantity.unwrap_or(0);
            p.stock_quantity = Some(before.saturating_sub(qty));
            p.total_sales = p.total_sales.saturating_add(qty);
            p.derive_stock_status(notify);
            p.modified = now;
            changes.push(format!(
                "{} ({}) {}&rarr;{}",
                p.name,
                p.sku,
                before,
                before - qty
            ));
            touched.push(target);
        }
        let meta_id = state.meta_id();
        let line = &mut o.lines[i];
        line.reduced_stock = Some(qty);
        line.meta.retain(|m| m.key != "_reduced_stock");
        line.meta.push(Meta {
            id: meta_id,
            key: "_reduced_stock".into(),
            value: Value::String(qty.to_string()),
        });
    }
    if !changes.is_empty() {
        add_note(
            state,
            o.id,
            &format!("Stock levels reduced: {}", changes.join(", ")),
            false,
            now,
        );
    }
    touched
}

fn restore_stock(state: &mut State, o: &mut Order, now: i64) -> Vec<u64> {
    o.stock_reduced = false;
    let mut changes = Vec::new();
    let mut touched = Vec::new();
    for i in 0..o.lines.len() {
        let Some(qty) = o.lines[i].reduced_stock.take() else {
            continue;
        };
        o.lines[i].meta.retain(|m| m.key != "_reduced_stock");
        let Some(target) = stock_target(state, &o.lines[i]) else {
            continue;
        };
        let notify = state.settings.notify_no_stock_amount;
        if let Some(p) = state.products.get_mut(&target) {
            let before = p.stock_quantity.unwrap_or(0);
            p.stock_quantity = Some(before.saturating_add(qty));
            p.derive_stock_status(notify);
            p.modified = now;
            changes.push(format!(
                "{} ({}) {}&rarr;{}",
                p.name,
                p.sku,
                before,
                before + qty
            ));
            touched.push(target);
        }
    }
    if !changes.is_empty() {
        add_note(
            state,
            o.id,
            &format!("Stock levels increased: {}", changes.join(", ")),
            false,
            now,
        );
    }
    touched
}

fn new_line(state: &mut State, item: &Map<String, Value>) -> Result<OrderLine, WpError> {
    let mut product_id = item.get("product_id").and_then(Value::as_u64).unwrap_or(0);
    let mut variation_id = item
        .get("variation_id")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if product_id == 0 && variation_id == 0 {
        if let Some(sku) = item.get("sku").and_then(Value::as_str) {
            if let Some(owner) = state.sku_owner(sku, None) {
                product_id = owner;
            }
        }
    }
    if product_id == 0 && variation_id == 0 {
        return Err(WpError::new(
            400,
            "woocommerce_rest_required_product_reference",
            "Product ID or SKU is required.",
        ));
    }
    if let Some(p) = state.products.get(&product_id) {
        if p.is_variation() {
            variation_id = p.id;
            product_id = p.parent_id;
        }
    }
    let priced = state
        .products
        .get(&if variation_id > 0 {
            variation_id
        } else {
            product_id
        })
        .cloned()
        .ok_or_else(|| {
            WpError::new(
                400,
                "woocommerce_rest_invalid_product_id",
                "Invalid product ID.",
            )
        })?;
    let quantity = item.get("quantity").and_then(Value::as_i64).unwrap_or(1);
    // prepare_line_items: a new line is priced from the product without tax; amounts sent
    // along win, each on its own.
    let amount = crate::tax::price_excluding_tax(state, &priced, quantity);
    let subtotal = item.get("subtotal").and_then(decimal).unwrap_or(amount);
    let total = item.get("total").and_then(decimal).unwrap_or(amount);
    let name = if priced.is_variation() {
        let parent = state
            .products
            .get(&priced.parent_id)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let opts: Vec<String> = priced.var_attrs.iter().map(|(_, o)| o.clone()).collect();
        if opts.is_empty() {
            parent
        } else {
            format!("{parent} - {}", opts.join(", "))
        }
    } else {
        priced.name.clone()
    };
    Ok(OrderLine {
        id: state.item_id(),
        name,
        product_id,
        variation_id,
        quantity,
        tax_class: match item.get("tax_class").and_then(Value::as_str) {
            Some(c) if state.settings.has_tax_class(c) => c.to_string(),
            _ if priced.tax_class == "parent" => state
                .products
                .get(&priced.parent_id)
                .map(|p| p.tax_class.clone())
                .unwrap_or_default(),
            _ => priced.tax_class.clone(),
        },
        subtotal,
        total,
        subtotal_tax: Decimal::ZERO,
        total_tax: Decimal::ZERO,
        taxes: Vec::new(),
        subtotal_taxes: Vec::new(),
        meta: Vec::new(),
        reduced_stock: None,
    })
}

/// A decimal from a JSON string or number.
pub fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => dec(s),
        Value::Number(n) => dec(&n.to_string()),
        _ => None,
    }
}

fn apply_address(target: &mut [(String, Option<String>)], src: &Map<String, Value>) {
    for (k, v) in src {
        if let Some(slot) = target.iter_mut().find(|(key, _)| key == k) {
            slot.1 = match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            };
        }
    }
}

/// Applies a REST create/update body. Returns `(status to apply, products touched)`; the
/// status change is applied last, as WooCommerce does.
pub fn apply_order_write(
    state: &mut State,
    o: &mut Order,
    body: &Map<String, Value>,
    mode: Mode,
    now: i64,
) -> Result<Option<String>, WpError> {
    let mut new_status = None;
    if let Some(v) = body.get("status") {
        let s = str_field(v, "status", mode)?;
        if STATUSES.contains(&s.as_str()) {
            new_status = Some(s);
        } else if mode == Mode::Batch {
            new_status = Some("pending".into());
        } else {
            return Err(WpError::invalid_param(
                "status",
                "rest_not_in_enum",
                &format!("status is not one of {}.", STATUSES.join(", ")),
            ));
        }
    }
    if let Some(Value::String(c)) = body.get("currency") {
        o.currency = c.clone();
    }
    if let Some(Value::Object(b)) = body.get("billing") {
        apply_address(&mut o.billing, b);
    }
    if let Some(Value::Object(s)) = body.get("shipping") {
        let mut tmp: Vec<(String, Option<String>)> = o
            .shipping
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        apply_address(&mut tmp, s);
        o.shipping = tmp
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
    }
    for (field, slot) in [
        ("payment_method", &mut o.payment_method),
        ("payment_method_title", &mut o.payment_method_title),
        ("transaction_id", &mut o.transaction_id),
    ] {
        if let Some(v) = body.get(field) {
            *slot = str_field(v, field, mode)?;
        }
    }
    if let Some(v) = body.get("customer_note") {
        let note = str_field(v, "customer_note", mode)?;
        if note != o.customer_note {
            o.customer_note = note;
            // Post storage: the customer note is one of the few edits that move date_modified.
            o.modified = now;
        }
    }
    if let Some(v) = body.get("customer_id") {
        o.customer_id = v.as_u64().unwrap_or(0);
    }
    if let Some(Value::Array(lines)) = body.get("line_items") {
        for item in lines {
            let Value::Object(item) = item else { continue };
            if let Some(id) = item.get("id").and_then(Value::as_u64) {
                let Some(idx) = o.lines.iter().position(|l| l.id == id) else {
                    return Err(WpError::new(
                        400,
                        "woocommerce_rest_invalid_item_id",
                        "Order item ID provided is not associated with order.",
                    ));
                };
                if let Some(q) = item.get("quantity").and_then(Value::as_i64) {
                    if q == 0 {
                        o.lines.remove(idx);
                        continue;
                    }
                    o.lines[idx].quantity = q;
                }
                if let Some(t) = item.get("subtotal").and_then(decimal) {
                    o.lines[idx].subtotal = t;
                }
                if let Some(t) = item.get("total").and_then(decimal) {
                    o.lines[idx].total = t;
                }
            } else {
                let line = new_line(state, item)?;
                o.lines.push(line);
            }
        }
    }
    if let Some(Value::Array(lines)) = body.get("shipping_lines") {
        for s in lines {
            let Value::Object(s) = s else { continue };
            let total = s.get("total").and_then(decimal).unwrap_or_default();
            if let Some(id) = s.get("id").and_then(Value::as_u64) {
                if let Some(line) = o.shipping_lines.iter_mut().find(|l| l.id == id) {
                    line.total = total;
                }
                continue;
            }
            o.shipping_lines.push(ShippingLine {
                id: state.item_id(),
                method_title: s
                    .get("method_title")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                method_id: s
                    .get("method_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                total,
                total_tax: Decimal::ZERO,
                taxes: Vec::new(),
            });
        }
    }
    if let Some(Value::Array(lines)) = body.get("fee_lines") {
        for f in lines {
            let Value::Object(f) = f else { continue };
            let tax_status = match f.get("tax_status").and_then(Value::as_str) {
                Some("none") => "none",
                _ => "taxable",
            };
            o.fee_lines.push(FeeLine {
                id: state.item_id(),
                name: f.get("name").and_then(Value::as_str).unwrap_or("").into(),
                tax_class: f
                    .get("tax_class")
                    .and_then(Value::as_str)
                    .filter(|c| state.settings.has_tax_class(c))
                    .unwrap_or("")
                    .into(),
                tax_status: tax_status.into(),
                total: f.get("total").and_then(decimal).unwrap_or_default(),
                total_tax: Decimal::ZERO,
                taxes: Vec::new(),
            });
        }
    }
    if let Some(Value::Array(meta)) = body.get("meta_data") {
        for m in meta {
            let Some(key) = m.get("key").and_then(Value::as_str) else {
                continue;
            };
            let value = m.get("value").cloned().unwrap_or(Value::Null);
            // As for products (samples 61, 62): by id when one is given, else by key; scalars
            // are stored as text, so a number comes back as a string.
            let idx = match m.get("id").and_then(Value::as_u64) {
                Some(id) => o.meta.iter().position(|x| x.id == id),
                None => o.meta.iter().position(|x| x.key == key),
            };
            let value = match value {
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(if b { "1".into() } else { String::new() }),
                other => other,
            };
            match (idx, value.is_null()) {
                (Some(i), true) => {
                    o.meta.remove(i);
                }
                (Some(i), false) => {
                    o.meta[i].value = value;
                    o.meta[i].key = key.into();
                }
                (None, false) => {
                    let id = state.meta_id();
                    o.meta.push(Meta {
                        id,
                        key: key.into(),
                        value,
                    })
                }
                (None, true) => {}
            }
        }
    }
    Ok(new_status)
}
