//! Products, variations, categories: models and calls.

use reqwest::Method;
use serde_json::{json, Value};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::client::{ApiVersion, Idempotency, WooClient, WooRequest};
use crate::de;
use crate::error::{Error, Result};
use duellsync_woo_model::{
    ApiError, Batch, BatchItem, BatchResult, Category, CategoryCreated, Page, Product,
    ProductWrite, BATCH_LIMIT, MAX_PER_PAGE,
};

/// `orderby` for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderBy {
    /// Stable and complete; the only safe order for full scans on 7.9.
    Id,
    /// Default; products have no id tie-break on 7.9 (rows skip and repeat across pages).
    Date,
    /// Last modification; same caveat as `Date` for products.
    Modified,
    /// Title.
    Title,
    /// Order of `include`.
    Include,
}

impl OrderBy {
    fn as_str(self) -> &'static str {
        match self {
            OrderBy::Id => "id",
            OrderBy::Date => "date",
            OrderBy::Modified => "modified",
            OrderBy::Title => "title",
            OrderBy::Include => "include",
        }
    }
}

/// `order` for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending (WooCommerce's default).
    Desc,
}

impl SortOrder {
    fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

/// Formats a cursor as WooCommerce needs it: UTC without an offset (used with
/// `dates_are_gmt=true`). A value with `Z` would be shifted by the site's timezone (7.9).
pub fn format_gmt_cursor(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
    de::format_datetime(PrimitiveDateTime::new(utc.date(), utc.time()))
}

/// Filters for `GET /products` (and variations).
#[derive(Clone, Debug, Default)]
pub struct ProductQuery {
    /// Exact SKU, case-insensitive; may return variations. Several as `A,B`.
    pub sku: Option<String>,
    /// Only these ids.
    pub include: Vec<u64>,
    /// Strictly after this instant (sent as UTC without offset, `dates_are_gmt=true`).
    pub modified_after: Option<OffsetDateTime>,
    /// Status filter (`any` by default on the server).
    pub status: Option<String>,
    /// Product type filter.
    pub kind: Option<String>,
    /// Parent ids.
    pub parent: Vec<u64>,
    /// Ordering.
    pub orderby: Option<OrderBy>,
    /// Direction.
    pub order: Option<SortOrder>,
    /// 1..=100.
    pub per_page: Option<u32>,
    /// 1-based page.
    pub page: Option<u32>,
    /// `_fields`: top-level field names only. `id` is added when missing because WooCommerce
    /// does not keep it implicitly.
    pub fields: Vec<String>,
    /// Extra raw parameters.
    pub extra: Vec<(String, String)>,
}

impl ProductQuery {
    pub(crate) fn to_params(&self) -> Result<Vec<(String, String)>> {
        let mut q = Vec::new();
        if let Some(sku) = &self.sku {
            q.push(("sku".into(), sku.clone()));
        }
        if !self.include.is_empty() {
            q.push(("include".into(), join_ids(&self.include)));
        }
        if !self.parent.is_empty() {
            q.push(("parent".into(), join_ids(&self.parent)));
        }
        if let Some(t) = self.modified_after {
            q.push(("modified_after".into(), format_gmt_cursor(t)));
            q.push(("dates_are_gmt".into(), "true".into()));
        }
        if let Some(s) = &self.status {
            q.push(("status".into(), s.clone()));
        }
        if let Some(k) = &self.kind {
            q.push(("type".into(), k.clone()));
        }
        push_paging(&mut q, self.orderby, self.order, self.per_page, self.page)?;
        push_fields(&mut q, &self.fields);
        q.extend(self.extra.iter().cloned());
        Ok(q)
    }
}

pub(crate) fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) fn push_paging(
    q: &mut Vec<(String, String)>,
    orderby: Option<OrderBy>,
    order: Option<SortOrder>,
    per_page: Option<u32>,
    page: Option<u32>,
) -> Result<()> {
    if let Some(o) = orderby {
        q.push(("orderby".into(), o.as_str().into()));
    }
    if let Some(o) = order {
        q.push(("order".into(), o.as_str().into()));
    }
    if let Some(pp) = per_page {
        if !(1..=MAX_PER_PAGE).contains(&pp) {
            return Err(Error::InvalidRequest(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}, got {pp}"
            )));
        }
        q.push(("per_page".into(), pp.to_string()));
    }
    if let Some(p) = page {
        if p == 0 {
            return Err(Error::InvalidRequest("page starts at 1".into()));
        }
        q.push(("page".into(), p.to_string()));
    }
    Ok(())
}

pub(crate) fn push_fields(q: &mut Vec<(String, String)>, fields: &[String]) {
    if fields.is_empty() {
        return;
    }
    let mut f: Vec<String> = fields.to_vec();
    if !f.iter().any(|x| x == "id") {
        f.insert(0, "id".into());
    }
    q.push(("_fields".into(), f.join(",")));
}

fn parse_batch_items<T: serde::de::DeserializeOwned>(
    v: Option<&Value>,
    endpoint: &str,
    map: fn(T) -> T,
) -> Result<Vec<BatchItem<T>>> {
    let Some(Value::Array(items)) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(err) = item.get("error") {
            let error: ApiError =
                serde_json::from_value(err.clone()).map_err(|source| Error::Decode {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
            let id = item.get("id").and_then(crate::error::json_u64);
            out.push(BatchItem::Err { id, error });
        } else {
            let t: T = serde_json::from_value(item.clone()).map_err(|source| Error::Decode {
                endpoint: endpoint.to_string(),
                source,
            })?;
            out.push(BatchItem::Ok(map(t)));
        }
    }
    Ok(out)
}

pub(crate) fn parse_batch<T: serde::de::DeserializeOwned>(
    body: &Value,
    endpoint: &str,
    map: fn(T) -> T,
) -> Result<BatchResult<T>> {
    Ok(BatchResult {
        create: parse_batch_items(body.get("create"), endpoint, map)?,
        update: parse_batch_items(body.get("update"), endpoint, map)?,
        delete: parse_batch_items(body.get("delete"), endpoint, map)?,
    })
}

/// Filters for `GET /products/categories`.
#[derive(Clone, Debug, Default)]
pub struct CategoryQuery {
    /// Name search.
    pub search: Option<String>,
    /// Parent id (0 = top level).
    pub parent: Option<u64>,
    /// Slug.
    pub slug: Option<String>,
    /// 1..=100.
    pub per_page: Option<u32>,
    /// Page.
    pub page: Option<u32>,
}

/// A product as read from any product or variation endpoint (v2's `in_stock` mapped).
pub(crate) fn product_from_value(v: Value, endpoint: &str) -> Result<Product> {
    serde_json::from_value::<Product>(v)
        .map(Product::normalise)
        .map_err(|source| Error::Decode {
            endpoint: endpoint.to_string(),
            source,
        })
}

impl WooClient {
    /// Serialises a write, mapping `stock_status` to v2's `in_stock`.
    pub(crate) fn product_body(&self, w: &ProductWrite) -> Result<Value> {
        let mut v = serde_json::to_value(w).map_err(|source| Error::Decode {
            endpoint: "serialise product".into(),
            source,
        })?;
        if self.api_version() == ApiVersion::V2 {
            if let Some(obj) = v.as_object_mut() {
                if let Some(ss) = obj.remove("stock_status") {
                    obj.insert("in_stock".into(), Value::Bool(ss == "instock"));
                }
            }
        }
        Ok(v)
    }

    /// `GET /products/{id}` (also returns a variation when given a variation id).
    pub async fn get_product(&self, id: u64) -> Result<Product> {
        let req = WooRequest::new(
            Method::GET,
            format!("products/{id}"),
            Idempotency::Idempotent,
        );
        let v = self.send(req).await?.body;
        product_from_value(v, "GET products/{id}")
    }

    /// `GET /products` with filters; one page.
    pub async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product>> {
        self.list_products_at("products", query).await
    }

    async fn list_products_at(&self, path: &str, query: &ProductQuery) -> Result<Page<Product>> {
        let mut req = WooRequest::new(Method::GET, path, Idempotency::Idempotent);
        req.query = query.to_params()?;
        let endpoint = format!("GET {}", crate::client::endpoint_template(path));
        let resp = self.send(req).await?;
        let items: Vec<Value> = resp.clone().decode(&endpoint)?;
        let items = items
            .into_iter()
            .map(|v| product_from_value(v, &endpoint))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total: resp.total,
            total_pages: resp.total_pages,
        })
    }

    /// Finds products (or variations) by exact, case-insensitive SKU.
    pub async fn find_by_sku(&self, sku: &str) -> Result<Vec<Product>> {
        let q = ProductQuery {
            sku: Some(sku.to_string()),
            per_page: Some(MAX_PER_PAGE),
            ..Default::default()
        };
        Ok(self.list_products(&q).await?.items)
    }

    /// A page-by-page scan of all products ordered by id ascending (the only ordering that
    /// neither skips nor repeats rows on 7.9). Memory use is one page.
    pub fn scan_products(&self, fields: &[&str], per_page: u32) -> ProductScan {
        ProductScan {
            client: self.clone(),
            query: ProductQuery {
                orderby: Some(OrderBy::Id),
                order: Some(SortOrder::Asc),
                per_page: Some(per_page.clamp(1, MAX_PER_PAGE)),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            },
            next_page: 1,
            done: false,
        }
    }

    /// `POST /products`. Not retried after a timeout (see [`Error::OutcomeUnknown`]).
    pub async fn create_product(&self, product: &ProductWrite) -> Result<Product> {
        let req = WooRequest::new(Method::POST, "products", Idempotency::NonIdempotent)
            .json(self.product_body(product)?);
        let v = self.send(req).await?.body;
        product_from_value(v, "POST products")
    }

    /// `PUT /products/{id}`.
    pub async fn update_product(&self, id: u64, product: &ProductWrite) -> Result<Product> {
        let mut body = self.product_body(product)?;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
        }
        let req = WooRequest::new(
            Method::PUT,
            format!("products/{id}"),
            Idempotency::Idempotent,
        )
        .json(body);
        let v = self.send(req).await?.body;
        product_from_value(v, "PUT products/{id}")
    }

    /// `DELETE /products/{id}` (`force=true` deletes for good; otherwise trash).
    pub async fn delete_product(&self, id: u64, force: bool) -> Result<Product> {
        let req = WooRequest::new(
            Method::DELETE,
            format!("products/{id}"),
            Idempotency::Idempotent,
        )
        .query("force", force.to_string());
        let v = self.send(req).await?.body;
        product_from_value(v, "DELETE products/{id}")
    }

    /// `POST /products/batch` with at most 100 items. Per-item errors come back per item in
    /// request order. A batch containing creates, or updates that make WooCommerce download an
    /// image (`src`), is not retried after a timeout; the error is [`Error::OutcomeUnknown`]
    /// and the caller should reconcile by reading.
    pub async fn batch_products(
        &self,
        batch: &Batch<ProductWrite>,
    ) -> Result<BatchResult<Product>> {
        self.batch_at("products/batch", batch).await
    }

    async fn batch_at(
        &self,
        path: &str,
        batch: &Batch<ProductWrite>,
    ) -> Result<BatchResult<Product>> {
        if batch.len() > BATCH_LIMIT {
            return Err(Error::BatchTooLarge(batch.len()));
        }
        let mut body = serde_json::Map::new();
        if !batch.create.is_empty() {
            let items = batch
                .create
                .iter()
                .map(|w| self.product_body(w))
                .collect::<Result<Vec<_>>>()?;
            body.insert("create".into(), Value::Array(items));
        }
        if !batch.update.is_empty() {
            let items = batch
                .update
                .iter()
                .map(|w| self.product_body(w))
                .collect::<Result<Vec<_>>>()?;
            body.insert("update".into(), Value::Array(items));
        }
        if !batch.delete.is_empty() {
            body.insert("delete".into(), json!(batch.delete));
        }
        // A create, and an update carrying an image `src` (every send makes WooCommerce download
        // it into a new media-library attachment), must not be repeated after a timeout.
        let downloads = |w: &ProductWrite| {
            w.images
                .iter()
                .flatten()
                .chain(w.image.iter())
                .any(|i| i.src.is_some())
        };
        let idempotency = if batch.create.is_empty() && !batch.update.iter().any(downloads) {
            Idempotency::Idempotent
        } else {
            Idempotency::NonIdempotent
        };
        let req = WooRequest::new(Method::POST, path, idempotency).json(Value::Object(body));
        let endpoint = format!("POST {}", crate::client::endpoint_template(path));
        let v = self.send(req).await?.body;
        parse_batch(&v, &endpoint, Product::normalise)
    }

    /// `GET /products/{id}/variations`.
    pub async fn list_variations(
        &self,
        product_id: u64,
        query: &ProductQuery,
    ) -> Result<Page<Product>> {
        self.list_products_at(&format!("products/{product_id}/variations"), query)
            .await
    }

    /// `POST /products/{id}/variations`.
    pub async fn create_variation(&self, product_id: u64, v: &ProductWrite) -> Result<Product> {
        let req = WooRequest::new(
            Method::POST,
            format!("products/{product_id}/variations"),
            Idempotency::NonIdempotent,
        )
        .json(self.product_body(v)?);
        let body = self.send(req).await?.body;
        product_from_value(body, "POST products/{id}/variations")
    }

    /// `PUT /products/{id}/variations/{vid}`.
    pub async fn update_variation(
        &self,
        product_id: u64,
        variation_id: u64,
        v: &ProductWrite,
    ) -> Result<Product> {
        let mut body = self.product_body(v)?;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
        }
        let req = WooRequest::new(
            Method::PUT,
            format!("products/{product_id}/variations/{variation_id}"),
            Idempotency::Idempotent,
        )
        .json(body);
        let body = self.send(req).await?.body;
        product_from_value(body, "PUT products/{id}/variations/{id}")
    }

    /// `POST /products/{id}/variations/batch` (≤ 100 items).
    pub async fn batch_variations(
        &self,
        product_id: u64,
        batch: &Batch<ProductWrite>,
    ) -> Result<BatchResult<Product>> {
        self.batch_at(&format!("products/{product_id}/variations/batch"), batch)
            .await
    }

    /// `GET /products/categories`.
    pub async fn list_categories(&self, query: &CategoryQuery) -> Result<Page<Category>> {
        let mut req = WooRequest::new(Method::GET, "products/categories", Idempotency::Idempotent);
        if let Some(s) = &query.search {
            req = req.query("search", s.clone());
        }
        if let Some(p) = query.parent {
            req = req.query("parent", p.to_string());
        }
        if let Some(s) = &query.slug {
            req = req.query("slug", s.clone());
        }
        push_paging(&mut req.query, None, None, query.per_page, query.page)?;
        let resp = self.send(req).await?;
        let (total, total_pages) = (resp.total, resp.total_pages);
        let items: Vec<Category> = resp.decode("GET products/categories")?;
        Ok(Page {
            items,
            total,
            total_pages,
        })
    }

    /// `POST /products/categories`; a name that exists under the parent returns its id.
    pub async fn create_category(
        &self,
        name: &str,
        parent: Option<u64>,
    ) -> Result<CategoryCreated> {
        let mut body = json!({ "name": name });
        if let Some(p) = parent {
            body["parent"] = json!(p);
        }
        let req = WooRequest::new(
            Method::POST,
            "products/categories",
            Idempotency::NonIdempotent,
        )
        .json(body);
        match self.call::<Category>(req).await {
            Ok(c) => Ok(CategoryCreated::Created(c)),
            Err(e) if e.code() == Some("term_exists") => {
                match e.api_error().and_then(ApiError::resource_id) {
                    Some(id) => Ok(CategoryCreated::Existing { id }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `DELETE /products/categories/{id}?force=true`.
    pub async fn delete_category(&self, id: u64) -> Result<()> {
        let req = WooRequest::new(
            Method::DELETE,
            format!("products/categories/{id}"),
            Idempotency::Idempotent,
        )
        .query("force", "true");
        self.send(req).await.map(|_| ())
    }
}

/// Page iterator over all products ordered by id; see [`WooClient::scan_products`].
#[derive(Debug)]
pub struct ProductScan {
    client: WooClient,
    query: ProductQuery,
    next_page: u32,
    done: bool,
}

impl ProductScan {
    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Product>>> {
        if self.done {
            return Ok(None);
        }
        let mut q = self.query.clone();
        q.page = Some(self.next_page);
        let page = self.client.list_products(&q).await?;
        let per_page = q.per_page.unwrap_or(MAX_PER_PAGE) as usize;
        let last = page.items.len() < per_page
            || page
                .total_pages
                .is_some_and(|tp| u64::from(self.next_page) >= tp);
        self.next_page += 1;
        if last {
            self.done = true;
        }
        if page.items.is_empty() {
            return Ok(None);
        }
        Ok(Some(page.items))
    }
}
