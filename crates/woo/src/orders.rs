//! Orders and order notes: the typed model an importer needs, and the calls.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::client::{ApiVersion, Idempotency, WooClient, WooRequest};
use crate::error::{Error, Result};
use crate::products::{format_gmt_cursor, join_ids, push_fields, push_paging, OrderBy, SortOrder};
use duellsync_woo_model::{NewOrder, Order, OrderNote, Page};
/// Filters for `GET /orders`.
#[derive(Clone, Debug, Default)]
pub struct OrderQuery {
    /// Statuses, sent as a comma list (v3). v2 accepts only one.
    pub status: Vec<String>,
    /// Created strictly after (UTC, sent without offset with `dates_are_gmt=true`).
    pub after: Option<OffsetDateTime>,
    /// Modified strictly after (same encoding). Misses edits that do not move
    /// `date_modified` on post storage; pair it with webhooks.
    pub modified_after: Option<OffsetDateTime>,
    /// Only these ids.
    pub include: Vec<u64>,
    /// Ordering.
    pub orderby: Option<OrderBy>,
    /// Direction.
    pub order: Option<SortOrder>,
    /// 1..=100.
    pub per_page: Option<u32>,
    /// Page.
    pub page: Option<u32>,
    /// `_fields` (nested `billing.email` works for orders); `id` added when missing.
    pub fields: Vec<String>,
    /// Extra raw parameters.
    pub extra: Vec<(String, String)>,
}

impl WooClient {
    /// `GET /orders` with filters; one page.
    pub async fn list_orders(&self, query: &OrderQuery) -> Result<Page<Order>> {
        let mut req = WooRequest::new(Method::GET, "orders", Idempotency::Idempotent);
        if !query.status.is_empty() {
            if self.api_version() == ApiVersion::V2 && query.status.len() > 1 {
                return Err(Error::InvalidRequest(
                    "wc/v2 filters orders by one status only".into(),
                ));
            }
            req = req.query("status", query.status.join(","));
        }
        let mut gmt = false;
        if let Some(t) = query.after {
            req = req.query("after", format_gmt_cursor(t));
            gmt = true;
        }
        if let Some(t) = query.modified_after {
            req = req.query("modified_after", format_gmt_cursor(t));
            gmt = true;
        }
        if gmt {
            req = req.query("dates_are_gmt", "true");
        }
        if !query.include.is_empty() {
            req = req.query("include", join_ids(&query.include));
        }
        push_paging(
            &mut req.query,
            query.orderby,
            query.order,
            query.per_page,
            query.page,
        )?;
        push_fields(&mut req.query, &query.fields);
        req.query.extend(query.extra.iter().cloned());
        let resp = self.send(req).await?;
        let (total, total_pages) = (resp.total, resp.total_pages);
        let items: Vec<Order> = resp.decode("GET orders")?;
        Ok(Page {
            items,
            total,
            total_pages,
        })
    }

    /// `GET /orders/{id}`.
    pub async fn get_order(&self, id: u64) -> Result<Order> {
        self.call(WooRequest::new(
            Method::GET,
            format!("orders/{id}"),
            Idempotency::Idempotent,
        ))
        .await
    }

    /// `GET /orders/{id}` trimmed to `fields` (`_fields`; `id` is always added). Fields left
    /// out read as empty.
    pub async fn get_order_fields(&self, id: u64, fields: &[&str]) -> Result<Order> {
        let mut req = WooRequest::new(Method::GET, format!("orders/{id}"), Idempotency::Idempotent);
        let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        push_fields(&mut req.query, &fields);
        self.call(req).await
    }

    /// `POST /orders`. Not retried after a timeout.
    pub async fn create_order(&self, order: &NewOrder) -> Result<Order> {
        let body = serde_json::to_value(order).map_err(|source| Error::Decode {
            endpoint: "serialise order".into(),
            source,
        })?;
        self.call(WooRequest::new(Method::POST, "orders", Idempotency::NonIdempotent).json(body))
            .await
    }

    /// `PUT /orders/{id}` with `{"status": ...}`. Safe to repeat: a second `completed` is a
    /// no-op on the store (but still fires `order.updated`).
    pub async fn update_order_status(&self, id: u64, status: &str) -> Result<Order> {
        self.update_order(id, &json!({ "status": status })).await
    }

    /// `PUT /orders/{id}` with `meta_data` entries (`{key, value}`, upserted by key) and, when
    /// given, a new status: one write, so the order never carries one without the other.
    /// WooCommerce applies the status change after the rest of the write; a meta-only write
    /// does not move `date_modified` (post storage) but still delivers `order.updated`.
    ///
    /// The answer is trimmed to `id`, `status` and `meta_data` (`_fields`, which WordPress
    /// applies to writes too): the whole order is several KB to parse, on the importer's hot
    /// path, and nobody reads the rest.
    pub async fn update_order_meta(
        &self,
        id: u64,
        meta_data: &[Value],
        status: Option<&str>,
    ) -> Result<Order> {
        let mut body = json!({ "meta_data": meta_data });
        if let Some(s) = status {
            body["status"] = json!(s);
        }
        let mut req = WooRequest::new(Method::PUT, format!("orders/{id}"), Idempotency::Idempotent)
            .json(body);
        push_fields(&mut req.query, &["status".into(), "meta_data".into()]);
        self.call(req).await
    }

    /// Orders with an id above `after_id`, newest first (`orderby=id&order=desc`), as raw JSON,
    /// page by page: new orders whatever their creation date says (an order an import plugin or
    /// an admin created with a past date has a new id). With `after_id` 0 (no cursor yet) the
    /// scan stops at the first order created before `created_floor`.
    ///
    /// Consecutive pages overlap by [`NEW_ORDER_SCAN_OVERLAP`] rows, so that orders trashed while
    /// the scan runs (which shifts the rows after them forward) skip nothing; repeated rows are
    /// dropped within the scan.
    pub fn scan_new_orders(
        &self,
        after_id: u64,
        created_floor: Option<OffsetDateTime>,
    ) -> NewOrderScan {
        NewOrderScan {
            client: self.clone(),
            after_id,
            created_floor: if after_id == 0 { created_floor } else { None },
            offset: 0,
            done: false,
            seen: HashSet::new(),
            newest_id: after_id,
        }
    }

    /// `PUT /orders/{id}` with any body (absolute values only).
    pub async fn update_order(&self, id: u64, body: &Value) -> Result<Order> {
        self.call(
            WooRequest::new(Method::PUT, format!("orders/{id}"), Idempotency::Idempotent)
                .json(body.clone()),
        )
        .await
    }

    /// `DELETE /orders/{id}` (`force=true` deletes for good).
    pub async fn delete_order(&self, id: u64, force: bool) -> Result<Order> {
        self.call(
            WooRequest::new(
                Method::DELETE,
                format!("orders/{id}"),
                Idempotency::Idempotent,
            )
            .query("force", force.to_string()),
        )
        .await
    }

    /// `POST /orders/{id}/notes`. A customer note e-mails the customer. Not retried after a
    /// timeout (a duplicate note would be visible).
    pub async fn add_order_note(
        &self,
        id: u64,
        note: &str,
        customer_note: bool,
    ) -> Result<OrderNote> {
        self.call(
            WooRequest::new(
                Method::POST,
                format!("orders/{id}/notes"),
                Idempotency::NonIdempotent,
            )
            .json(json!({ "note": note, "customer_note": customer_note })),
        )
        .await
    }

    /// `GET /orders/{id}/notes`.
    pub async fn list_order_notes(&self, id: u64) -> Result<Vec<OrderNote>> {
        self.call(WooRequest::new(
            Method::GET,
            format!("orders/{id}/notes"),
            Idempotency::Idempotent,
        ))
        .await
    }
}

/// Rows each page of [`WooClient::scan_new_orders`] repeats of the page before.
pub const NEW_ORDER_SCAN_OVERLAP: u64 = 10;

/// Page iterator of [`WooClient::scan_new_orders`].
#[derive(Debug)]
pub struct NewOrderScan {
    client: WooClient,
    after_id: u64,
    created_floor: Option<OffsetDateTime>,
    offset: u64,
    done: bool,
    seen: HashSet<u64>,
    newest_id: u64,
}

fn created_gmt(o: &Value) -> Option<OffsetDateTime> {
    let s = o.get("date_created_gmt")?.as_str()?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s.get(..19)?, &fmt)
        .ok()
        .map(|d| d.assume_utc())
}

impl NewOrderScan {
    /// The next page of new orders (never empty), or `None` once the cursor is reached.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>> {
        while !self.done {
            let per_page = crate::MAX_PER_PAGE;
            let req = WooRequest::new(Method::GET, "orders", Idempotency::Idempotent)
                .query("orderby", "id")
                .query("order", "desc")
                .query("per_page", per_page.to_string())
                .query("offset", self.offset.to_string());
            let rows: Vec<Value> = self.client.send(req).await?.decode("GET orders")?;
            if rows.len() < per_page as usize {
                self.done = true;
            }
            self.offset += u64::from(per_page) - NEW_ORDER_SCAN_OVERLAP;
            let mut page = Vec::new();
            for o in rows {
                let Some(id) = o.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                if id <= self.after_id {
                    self.done = true;
                    break;
                }
                if let (Some(floor), Some(created)) = (self.created_floor, created_gmt(&o)) {
                    if created < floor {
                        // Older than the first run looks back: covered by the cursor, not new.
                        self.newest_id = self.newest_id.max(id);
                        self.done = true;
                        break;
                    }
                }
                if self.seen.insert(id) {
                    self.newest_id = self.newest_id.max(id);
                    page.push(o);
                }
            }
            if !page.is_empty() {
                return Ok(Some(page));
            }
        }
        Ok(None)
    }

    /// The highest order id seen so far (also one older than `created_floor`, which the scan
    /// passes over on purpose): the next cursor once the scan is complete.
    pub fn newest_id(&self) -> u64 {
        self.newest_id
    }
}
