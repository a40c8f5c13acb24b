//! Offset paging the way DUELL needs it: `start` moves by the rows actually received (DUELL caps
//! pages at 100 whatever `length` asks), paging stops on an empty page or when `start` reaches
//! `total_count`, and rows are de-duplicated by id because offset paging over changing data can
//! repeat rows.

use std::collections::HashSet;
use std::marker::PhantomData;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::{Call, DuellClient};
use crate::de;
use crate::error::{Error, Result};
use crate::query::Query;

/// How many pages in a row may consist only of rows already seen before paging is declared
/// stuck (a server that ignores `start` would otherwise loop forever).
const MAX_STALE_PAGES: u32 = 3;

/// An async page iterator over a DUELL list endpoint. Call [`Pages::next_page`] until it returns
/// `None`, or turn it into a [`Stream`] of pages with [`Pages::into_stream`]. Only the ids seen
/// so far are kept in memory, never the rows.
pub struct Pages<T> {
    client: DuellClient,
    endpoint: &'static str,
    payload_key: &'static str,
    query: Query,
    page_size: u32,
    start: u64,
    total: Option<u64>,
    seen: HashSet<u64>,
    key: fn(&T) -> Option<u64>,
    finished: bool,
    stale_pages: u32,
    skipped_rows: u64,
    _rows: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("endpoint", &self.endpoint)
            .field("start", &self.start)
            .field("total", &self.total)
            .field("finished", &self.finished)
            .finish()
    }
}

impl<T: DeserializeOwned> Pages<T> {
    pub(crate) fn new(
        client: DuellClient,
        endpoint: &'static str,
        payload_key: &'static str,
        query: Query,
        page_size: u32,
        key: fn(&T) -> Option<u64>,
    ) -> Self {
        Pages {
            client,
            endpoint,
            payload_key,
            query,
            page_size: page_size.clamp(1, 1000),
            start: 0,
            total: None,
            seen: HashSet::new(),
            key,
            finished: false,
            stale_pages: 0,
            skipped_rows: 0,
            _rows: PhantomData,
        }
    }

    /// `total_count` of the last page (rows matching the filters), once a page was read.
    pub fn total_count(&self) -> Option<u64> {
        self.total
    }

    /// The offset of the next page.
    pub fn position(&self) -> u64 {
        self.start
    }

    /// Rows dropped because they could not be read (no usable id); each was logged.
    pub fn skipped_rows(&self) -> u64 {
        self.skipped_rows
    }

    /// The next page of rows not seen before, or `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            if self.total.is_some_and(|t| self.start >= t) {
                self.finished = true;
                return Ok(None);
            }
            let mut q = self.query.clone();
            q.set("start", self.start.to_string());
            q.set("length", self.page_size.to_string());
            let envelope = self.client.execute(&Call::get(self.endpoint, q)).await?;
            let total = envelope
                .get("total_count")
                .and_then(|v| de::u64_from_value(v).ok().flatten());
            if total.is_some() {
                self.total = total;
            }
            let rows: Vec<Value> = match envelope.get(self.payload_key) {
                Some(Value::Array(a)) => a.clone(),
                Some(Value::Object(m)) => m.values().cloned().collect(),
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) if s.is_empty() => Vec::new(),
                Some(_) => {
                    return Err(Error::InvalidResponse {
                        endpoint: self.endpoint.into(),
                        detail: format!("`{}` is not a list", self.payload_key),
                    })
                }
            };
            if rows.is_empty() {
                self.finished = true;
                return Ok(None);
            }
            self.start += rows.len() as u64;
            let mut page = Vec::with_capacity(rows.len());
            for row in rows {
                match serde_json::from_value::<T>(row) {
                    Ok(item) => {
                        if let Some(id) = (self.key)(&item) {
                            if !self.seen.insert(id) {
                                continue;
                            }
                        }
                        page.push(item);
                    }
                    Err(e) => {
                        self.skipped_rows += 1;
                        tracing::warn!(endpoint = self.endpoint, error = %e, "skipping unreadable duell row");
                    }
                }
            }
            if !page.is_empty() {
                self.stale_pages = 0;
                return Ok(Some(page));
            }
            self.stale_pages += 1;
            if self.stale_pages >= MAX_STALE_PAGES {
                return Err(Error::InvalidResponse {
                    endpoint: self.endpoint.into(),
                    detail: "paging does not advance (pages repeat rows already seen)".into(),
                });
            }
        }
    }

    /// Reads every remaining page into one vector (for small result sets only).
    pub async fn collect_all(mut self) -> Result<Vec<T>> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }
}

impl<T: DeserializeOwned + Send + 'static> Pages<T> {
    /// The pages as a stream; it ends after the last page or the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Vec<T>>> + Send {
        futures::stream::try_unfold(self, |mut pages| async move {
            Ok(pages.next_page().await?.map(|page| (page, pages)))
        })
    }
}
