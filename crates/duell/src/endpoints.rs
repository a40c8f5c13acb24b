//! One method per DUELL endpoint (reference §6), plus the UNVERIFIED order lookup.

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::client::{Call, DuellClient, Kind, Payload};
use crate::de;
use crate::error::{Error, Result};
use crate::model::*;
use crate::paging::Pages;
use crate::query::{duell_datetime, ProductQuery, Query, StockQuery};

fn amount(d: Decimal) -> Value {
    // Exact decimal text as a JSON number (serde_json's arbitrary_precision is on).
    d.normalize()
        .to_string()
        .parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

pub(crate) fn bulk<T: DeserializeOwned>(endpoint: &str, envelope: Value) -> Result<SaveOutcome<T>> {
    let total_affected = envelope
        .get("total_affected")
        .and_then(|v| de::u64_from_value(v).ok().flatten());
    let validation = envelope
        .get("validation_message")
        .cloned()
        .map(ValidationMessage)
        .filter(|v| !v.is_empty());
    if total_affected == Some(0) {
        return Err(Error::Rejected {
            endpoint: endpoint.into(),
            http_status: 200,
            code: None,
            message: "nothing was saved (total_affected 0)".into(),
            validation,
        });
    }
    let rows: Vec<Value> = match envelope.get("data") {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::Object(m)) => m.values().cloned().collect(),
        _ => Vec::new(),
    };
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        // DUELL said it saved: an unreadable row means we cannot tell what was created.
        let item = serde_json::from_value(row).map_err(|e| Error::OutcomeUnknown {
            endpoint: endpoint.into(),
            reason: format!("saved, but a created row is unreadable: {e}"),
        })?;
        data.push(item);
    }
    Ok(SaveOutcome {
        total_affected,
        data,
        validation,
    })
}

/// The departments of a `department/list` answer.
pub(crate) fn departments_of(envelope: &Value) -> Result<Vec<Department>> {
    let rows = envelope.get("departments").cloned().unwrap_or(Value::Null);
    let rows = match rows {
        Value::Array(a) => a,
        Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    rows.into_iter()
        .map(|r| {
            serde_json::from_value(r).map_err(|e| Error::InvalidResponse {
                endpoint: "department/list".into(),
                detail: e.to_string(),
            })
        })
        .collect()
}

/// The customer id of a `PUT customer` answer; `given` is the id an update was sent with.
pub(crate) fn customer_id_of(envelope: &Value, given: Option<CustomerId>) -> Result<CustomerId> {
    // Create answers `customers: <id>` (a scalar); accept a list or object too.
    let id = match envelope.get("customers") {
        Some(Value::Array(a)) => a
            .first()
            .and_then(|c| c.get("customer_id").or(Some(c)))
            .cloned(),
        Some(Value::Object(m)) => m.get("customer_id").cloned(),
        Some(other) => Some(other.clone()),
        None => envelope.get("customer_id").cloned(),
    }
    .and_then(|x| de::u64_from_value(&x).ok().flatten())
    .filter(|id| *id != 0)
    .map(CustomerId);
    match (id, given) {
        (Some(id), _) => Ok(id),
        (None, Some(id)) => Ok(id),
        (None, None) => Err(Error::OutcomeUnknown {
            endpoint: "customer".into(),
            reason: "customer saved but its id is missing from the answer".into(),
        }),
    }
}

/// The order of a `logistics/orders/view/{id}` answer.
pub(crate) fn order_view_of(envelope: &Value) -> Result<OrderView> {
    let data = envelope.get("data").cloned().unwrap_or(Value::Null);
    serde_json::from_value(data).map_err(|e| Error::InvalidResponse {
        endpoint: "logistics/orders/view".into(),
        detail: e.to_string(),
    })
}

fn order_json(order: &NewOrder, department: &DepartmentToken, customer_order: bool) -> Value {
    let mut data = Map::new();
    data.insert("department_id".into(), json!(department.expose()));
    data.insert("customer_id".into(), json!(order.customer_id.0));
    data.insert(
        "reference_order_number".into(),
        json!(order.reference_order_number),
    );
    data.insert("reference_comment".into(), json!(order.reference_comment));
    data.insert("comments".into(), json!(order.comments));
    let date = duell_datetime(order.order_date);
    data.insert("order_date".into(), json!(date));
    data.insert("round_off_amount".into(), amount(order.round_off_amount));
    if let Some(a) = &order.order_address {
        data.insert("order_address".into(), json!(a));
    }
    if customer_order {
        if let Some(a) = &order.shipping_address {
            data.insert("shipping_address".into(), json!(a));
        }
        data.insert(
            "purchase_order_status_id".into(),
            json!(order.purchase_order_status_id.unwrap_or(1)),
        );
        data.insert("is_locked".into(), json!(true));
        data.insert("is_locked_at".into(), json!(date));
    }
    data.insert("is_true".into(), json!(false));
    data.insert("is_pos".into(), json!(false));
    data.insert("is_invoice".into(), json!(false));
    if !customer_order {
        if let Some(id) = order.ref_customer_order_id {
            data.insert("ref_order_type".into(), json!("customer_order"));
            data.insert("ref_order_id".into(), json!(id.0));
        }
    }
    let mut lines = Map::new();
    for l in &order.lines {
        lines.insert(
            l.key.clone(),
            json!({
                "entity_type": l.entity_type,
                "product_id": l.product_id.0,
                "price_ex_vat": amount(l.price_ex_vat),
                "price_inc_vat": amount(l.price_inc_vat),
                "quantity": amount(l.quantity),
                "vatrate_percent": amount(l.vatrate_percent),
                "discount_amount": l.discount_amount.map(amount).unwrap_or_else(|| json!("")),
                "comments": l.comments,
            }),
        );
    }
    json!({"order_data": data, "product_data": lines})
}

fn orders_body(orders: &[NewOrder], department: &DepartmentToken, customer_order: bool) -> Value {
    // PHP's json_encode of an associative array: an object keyed by the shop order id.
    let mut map = Map::new();
    for o in orders {
        map.insert(o.key.clone(), order_json(o, department, customer_order));
    }
    json!({ "orders": map })
}

impl DuellClient {
    /// `GET department/list`: the client's departments and their tokens.
    pub async fn departments(&self) -> Result<Vec<Department>> {
        let v = self
            .execute(&Call::get("department/list", Query::new()))
            .await?;
        departments_of(&v)
    }

    /// `GET product/list`, page by page (see [`Pages`]), de-duplicated by `product_id`.
    pub fn products(&self, query: ProductQuery) -> Pages<Product> {
        Pages::new(
            self.clone(),
            "product/list",
            "products",
            query.to_query(),
            query.page_size,
            |p: &Product| Some(p.product_id.0),
        )
    }

    /// Products whose `product_number` equals `number` exactly (several: numbers are not
    /// unique). Deleted products are not included.
    pub async fn find_products_by_number(&self, number: &str) -> Result<Vec<Product>> {
        let query = ProductQuery {
            product_number: Some(number.to_string()),
            ..ProductQuery::default()
        };
        let all = self.products(query).collect_all().await?;
        // Whether DUELL matches partially is unknown (open question 6): filter exactly here.
        Ok(all
            .into_iter()
            .filter(|p| p.product_number.trim() == number.trim())
            .collect())
    }

    /// `POST product/save`: creates products. Not idempotent (a repeat creates duplicates).
    pub async fn save_products(
        &self,
        products: &[NewProduct],
    ) -> Result<SaveOutcome<SavedProduct>> {
        let body = json!({ "product_data": products });
        let v = self
            .execute(&Call::post("product/save", body, Kind::Write))
            .await?;
        bulk("product/save", v)
    }

    /// `GET product/category/list/product`, optionally filtered by exact name.
    pub fn categories(&self, name: Option<&str>) -> Pages<Category> {
        let mut q = Query::new();
        if let Some(n) = name {
            q.filter("category_name", n.to_string());
        }
        Pages::new(
            self.clone(),
            "product/category/list/product",
            "categories",
            q,
            100,
            |c: &Category| Some(c.category_id.0),
        )
    }

    /// The category named `name` (case-insensitive), if it exists.
    pub async fn find_category_by_name(&self, name: &str) -> Result<Option<Category>> {
        let all = self.categories(Some(name)).collect_all().await?;
        Ok(all
            .into_iter()
            .find(|c| c.category_name.trim().eq_ignore_ascii_case(name.trim())))
    }

    /// `POST product/category/save`: creates categories. Not idempotent.
    pub async fn save_categories(
        &self,
        categories: &[NewCategory],
    ) -> Result<SaveOutcome<SavedCategory>> {
        let body = json!({ "category_data": categories });
        let v = self
            .execute(&Call::post("product/category/save", body, Kind::Write))
            .await?;
        bulk("product/category/save", v)
    }

    /// `GET all/product/stock`, page by page, de-duplicated by `product_id`.
    pub fn stock(&self, query: StockQuery) -> Pages<StockRow> {
        Pages::new(
            self.clone(),
            "all/product/stock",
            "data",
            query.to_query(),
            query.page_size,
            |r: &StockRow| Some(r.product_id.0),
        )
    }

    /// `POST product/adjust-stock`: subtracts each quantity from the department's stock.
    /// Not idempotent. Rows DUELL refused (e.g. unknown product number) are in the outcome's
    /// `validation`; DUELL's plugin counts the call as done only when it is empty.
    pub async fn adjust_stock(
        &self,
        department: &DepartmentToken,
        lines: &[StockAdjustment],
    ) -> Result<SaveOutcome<Value>> {
        let body = json!({ "department_token": department.expose(), "product_data": lines });
        let v = self
            .execute(&Call::post("product/adjust-stock", body, Kind::Write))
            .await?;
        bulk("product/adjust-stock", v)
    }

    async fn customers_by(&self, filter: &str, value: &str) -> Result<Vec<Customer>> {
        let mut q = Query::new();
        q.filter(filter, value.to_string());
        Pages::new(
            self.clone(),
            "customer/list",
            "customers",
            q,
            100,
            |c: &Customer| Some(c.customer_id.0),
        )
        .collect_all()
        .await
    }

    /// `GET customer/list` with `filter[customer_phone]`. Pass the normalised number: whether
    /// DUELL normalises (+47 etc.) is unknown.
    pub async fn find_customers_by_phone(&self, phone: &str) -> Result<Vec<Customer>> {
        self.customers_by("customer_phone", phone).await
    }

    /// `GET customer/list` with `filter[customer_email]`.
    pub async fn find_customers_by_email(&self, email: &str) -> Result<Vec<Customer>> {
        self.customers_by("customer_email", email).await
    }

    /// `PUT customer` (all fields in the query string). Without `customer_id` it creates a
    /// customer (not idempotent: a timeout is [`Error::OutcomeUnknown`]); with it, it updates
    /// that customer (idempotent, retried). Returns the customer id.
    pub async fn upsert_customer(&self, customer: &CustomerInput) -> Result<CustomerId> {
        let mut q = Query::new();
        if let Some(id) = customer.customer_id {
            q.push("customer_id", id.to_string());
        }
        q.push("customer_name", customer.customer_name.clone());
        for (k, v) in [
            ("phone", &customer.phone),
            ("email", &customer.email),
            ("primary_address", &customer.primary_address),
            ("primary_zip", &customer.primary_zip),
            ("city", &customer.city),
        ] {
            if let Some(v) = v {
                q.push(k, v.clone());
            }
        }
        let call = Call {
            method: reqwest::Method::PUT,
            endpoint: "customer",
            path: "customer".into(),
            query: q,
            payload: Payload::None,
            kind: if customer.customer_id.is_some() {
                Kind::IdempotentWrite
            } else {
                Kind::Write
            },
            authed: true,
        };
        let v = self.execute(&call).await?;
        customer_id_of(&v, customer.customer_id)
    }

    /// `POST logistics/orders/save`: creates customer orders (kundeordre; locked, stock
    /// reserved, status `purchase_order_status_id`, default 1). Not idempotent: DUELL has no
    /// idempotency key, so a timeout is [`Error::OutcomeUnknown`] and is never re-sent.
    pub async fn save_customer_orders(
        &self,
        department: &DepartmentToken,
        orders: &[NewOrder],
    ) -> Result<SaveOutcome<SavedOrder>> {
        let body = orders_body(orders, department, true);
        let v = self
            .execute(&Call::post("logistics/orders/save", body, Kind::Write))
            .await?;
        bulk("logistics/orders/save", v)
    }

    /// `GET logistics/orders/view/{id}`: one customer order (status and lines).
    pub async fn view_customer_order(&self, id: OrderId) -> Result<OrderView> {
        let mut call = Call::get("logistics/orders/view", Query::new());
        call.path = format!("logistics/orders/view/{}", id.0);
        let v = self.execute(&call).await?;
        order_view_of(&v)
    }

    /// `POST sale/orders/save`: creates sales orders (salgsordre; a completed sale that draws
    /// stock at once). Set `ref_customer_order_id` to link one to a customer order. Not
    /// idempotent.
    pub async fn save_sales_orders(
        &self,
        department: &DepartmentToken,
        orders: &[NewOrder],
    ) -> Result<SaveOutcome<SavedOrder>> {
        let body = orders_body(orders, department, false);
        let v = self
            .execute(&Call::post("sale/orders/save", body, Kind::Write))
            .await?;
        bulk("sale/orders/save", v)
    }

    async fn orders_by_reference(
        &self,
        endpoint: &'static str,
        reference: &str,
    ) -> Result<Vec<OrderSummary>> {
        let mut q = Query::new();
        q.filter("reference_order_number", reference.to_string());
        let all: Vec<OrderSummary> = Pages::new(
            self.clone(),
            endpoint,
            "orders",
            q,
            100,
            |o: &OrderSummary| Some(o.order_id.0),
        )
        .collect_all()
        .await?;
        Ok(all
            .into_iter()
            .filter(|o| o.reference_order_number.trim() == reference.trim())
            .collect())
    }

    /// **UNVERIFIED against the real DUELL API.** `GET logistics/orders/list?
    /// filter[reference_order_number]=X`: the customer orders carrying a shop order id. DUELL
    /// documents no such lookup (reference open questions 9 and 12); duell-sim implements it.
    /// Use it only when an operator switched the lookup on; on real DUELL expect
    /// [`Error::Rejected`] (404) or a response that ignores the filter (rows whose reference does
    /// not match are dropped here, so an ignored filter yields no false match).
    pub async fn find_customer_orders_by_reference(
        &self,
        reference: &str,
    ) -> Result<Vec<OrderSummary>> {
        self.orders_by_reference("logistics/orders/list", reference)
            .await
    }

    /// **UNVERIFIED against the real DUELL API.** `GET sale/orders/list?
    /// filter[reference_order_number]=X`: the sales orders carrying a shop order id. See
    /// [`DuellClient::find_customer_orders_by_reference`].
    pub async fn find_sales_orders_by_reference(
        &self,
        reference: &str,
    ) -> Result<Vec<OrderSummary>> {
        self.orders_by_reference("sale/orders/list", reference)
            .await
    }
}
