//! Query strings the way DUELL's PHP backend reads them: bracket keys such as
//! `filter[product_number]=X`, percent-encoded as `filter%5Bproduct_number%5D=X`, and booleans as
//! `1`/`0` (what PHP itself sends).

use time::PrimitiveDateTime;

use crate::model::{DepartmentToken, ProductId};

/// An ordered list of query parameters.
#[derive(Clone, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
    /// Indexes of pairs whose value is a secret (department token): kept out of logs.
    secret: Vec<usize>,
}

impl Query {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((key.into(), value.into()));
        self
    }

    pub(crate) fn push_secret(&mut self, key: impl Into<String>, value: &str) -> &mut Self {
        self.secret.push(self.pairs.len());
        self.pairs.push((key.into(), value.to_string()));
        self
    }

    /// `filter[name]=value`.
    pub(crate) fn filter(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.push(format!("filter[{name}]"), value)
    }

    /// Replaces (or adds) a top-level parameter, for paging.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if let Some(p) = self.pairs.iter_mut().find(|(k, _)| k == key) {
            p.1 = value;
        } else {
            self.pairs.push((key.to_string(), value));
        }
        self
    }

    /// The encoded query string (without `?`).
    pub(crate) fn encode(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether a top-level parameter is set (paged reads set `length`).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// The parameters safe to log (secret values redacted).
    pub(crate) fn redacted(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if self.secret.contains(&i) {
                s.append_pair(k, "REDACTED");
            } else {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

pub(crate) fn php_bool(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

pub(crate) fn duell_datetime(dt: PrimitiveDateTime) -> String {
    use time::macros::format_description;
    dt.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .unwrap_or_default()
}

/// Sort direction of a list call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Ascending (the default; stable paging needs it together with `sort_by=product_id`).
    #[default]
    Asc,
    /// Descending.
    Desc,
}

/// Filters and sorting of `product/list`. The default lists every non-deleted product sorted by
/// `product_id` ascending (the only ordering known to page stably).
#[derive(Debug, Clone)]
pub struct ProductQuery {
    /// `filter[view_on_webshop]`: only products shown in the web shop.
    pub view_on_webshop: Option<bool>,
    /// `filter[product_number]`: lookup by item number (DUELL may match partially; see
    /// [`crate::DuellClient::find_products_by_number`] for an exact lookup).
    pub product_number: Option<String>,
    /// `filter[last_update_date]`: products changed since then (DUELL local time; the exact
    /// semantics on real DUELL are unknown, reference open question 4).
    pub last_update_date: Option<PrimitiveDateTime>,
    /// `filter[is_deleted]=1` lists deleted products.
    pub is_deleted: Option<bool>,
    /// `filter[category_id]`.
    pub category_id: Option<u64>,
    /// Top-level `sort_by` (default `product_id`; `None` sends none).
    pub sort_by: Option<String>,
    /// Top-level `sort_order`.
    pub sort_order: SortOrder,
    /// Rows asked per page; DUELL caps pages at 100 whatever is asked.
    pub page_size: u32,
}

impl Default for ProductQuery {
    fn default() -> Self {
        ProductQuery {
            view_on_webshop: None,
            product_number: None,
            last_update_date: None,
            is_deleted: None,
            category_id: None,
            sort_by: Some("product_id".into()),
            sort_order: SortOrder::Asc,
            page_size: 100,
        }
    }
}

impl ProductQuery {
    /// Products shown in the web shop (what the catalogue sync reads).
    pub fn webshop() -> Self {
        ProductQuery {
            view_on_webshop: Some(true),
            ..Self::default()
        }
    }

    /// Deleted products (DUELL returns them only with `filter[is_deleted]=1`).
    pub fn deleted() -> Self {
        ProductQuery {
            is_deleted: Some(true),
            ..Self::default()
        }
    }

    pub(crate) fn to_query(&self) -> Query {
        let mut q = Query::new();
        if let Some(v) = self.view_on_webshop {
            q.filter("view_on_webshop", php_bool(v));
        }
        if let Some(n) = &self.product_number {
            q.filter("product_number", n.clone());
        }
        if let Some(d) = self.last_update_date {
            q.filter("last_update_date", duell_datetime(d));
        }
        if let Some(v) = self.is_deleted {
            q.filter("is_deleted", php_bool(v));
        }
        if let Some(c) = self.category_id {
            q.filter("category_id", c.to_string());
        }
        if let Some(s) = &self.sort_by {
            q.push("sort_by", s.clone());
            q.push(
                "sort_order",
                match self.sort_order {
                    SortOrder::Asc => "ASC",
                    SortOrder::Desc => "DESC",
                },
            );
        }
        q
    }
}

/// Filters of `all/product/stock`.
#[derive(Debug, Clone)]
pub struct StockQuery {
    /// `department=<token>`: limit the rows' `department` array to that department.
    pub department: Option<DepartmentToken>,
    /// `filter[view_on_webshop]`.
    pub view_on_webshop: Option<bool>,
    /// `filter[product_id][]`: only these products (effect on real DUELL unverified; keep
    /// batches small, third-party code used 40).
    pub product_ids: Vec<ProductId>,
    /// Rows asked per page (capped at 100 by DUELL).
    pub page_size: u32,
}

impl StockQuery {
    /// Stock of one department.
    pub fn department(token: DepartmentToken) -> Self {
        StockQuery {
            department: Some(token),
            view_on_webshop: None,
            product_ids: Vec::new(),
            page_size: 100,
        }
    }

    pub(crate) fn to_query(&self) -> Query {
        let mut q = Query::new();
        if let Some(d) = &self.department {
            q.push_secret("department", d.expose());
        }
        if let Some(v) = self.view_on_webshop {
            q.filter("view_on_webshop", php_bool(v));
        }
        for id in &self.product_ids {
            q.push("filter[product_id][]", id.to_string());
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_filters_with_php_bracket_keys() {
        let q = ProductQuery {
            product_number: Some("X 1&2".into()),
            view_on_webshop: Some(true),
            ..ProductQuery::default()
        }
        .to_query();
        assert_eq!(
            q.encode(),
            "filter%5Bview_on_webshop%5D=1&filter%5Bproduct_number%5D=X+1%262&sort_by=product_id&sort_order=ASC"
        );
    }

    #[test]
    fn redacts_department_tokens_in_logged_queries() {
        let q = StockQuery::department(DepartmentToken::new("secret-token-123")).to_query();
        assert!(q.encode().contains("secret-token-123"));
        assert!(!q.redacted().contains("secret-token-123"));
    }
}
