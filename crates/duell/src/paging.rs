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
    query: Query,
    page_size: u32,
    cursor: Cursor<T>,
}

impl<T> std::fmt::Debug for Pages<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("endpoint", &self.cursor.endpoint)
            .field("start", &self.cursor.start)
            .field("total", &self.cursor.total)
            .field("finished", &self.cursor.finished)
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
            query,
            page_size: page_size.clamp(1, 1000),
            cursor: Cursor::new(endpoint, payload_key, key),
        }
    }

    /// `total_count` of the last page (rows matching the filters), once a page was read.
    pub fn total_count(&self) -> Option<u64> {
        self.cursor.total
    }

    /// The offset of the next page.
    pub fn position(&self) -> u64 {
        self.cursor.start
    }

    /// Rows dropped because they could not be read (no usable id); each was logged.
    pub fn skipped_rows(&self) -> u64 {
        self.cursor.skipped_rows
    }

    /// The next page of rows not seen before, or `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>> {
        loop {
            let Some(start) = self.cursor.next_start() else {
                return Ok(None);
            };
            let mut q = self.query.clone();
            q.set("start", start.to_string());
            q.set("length", self.page_size.to_string());
            let envelope = self
                .client
                .execute(&Call::get(self.cursor.endpoint, q))
                .await?;
            match self.cursor.absorb(&envelope)? {
                Absorbed::End => return Ok(None),
                Absorbed::Page(page) => return Ok(Some(page)),
                Absorbed::Stale => continue,
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

/// What one page answer did to the [`Cursor`].
#[derive(Debug)]
pub(crate) enum Absorbed<T> {
    /// An empty page: the listing is over.
    End,
    /// Rows not seen before.
    Page(Vec<T>),
    /// Only rows already seen: ask for the next page.
    Stale,
}

/// The paging bookkeeping of [`Pages`], without HTTP: where the next page starts, when the
/// listing is over, and which rows were already handed out. Driven by the answers `absorb`
/// is given, so it can be tested against any page source.
pub(crate) struct Cursor<T> {
    endpoint: &'static str,
    payload_key: &'static str,
    start: u64,
    total: Option<u64>,
    seen: HashSet<u64>,
    key: fn(&T) -> Option<u64>,
    finished: bool,
    stale_pages: u32,
    skipped_rows: u64,
    _rows: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Cursor<T> {
    pub(crate) fn new(
        endpoint: &'static str,
        payload_key: &'static str,
        key: fn(&T) -> Option<u64>,
    ) -> Self {
        Cursor {
            endpoint,
            payload_key,
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

    /// The `start` of the next page to ask for; `None` when the listing is over.
    pub(crate) fn next_start(&mut self) -> Option<u64> {
        if self.finished {
            return None;
        }
        if self.total.is_some_and(|t| self.start >= t) {
            self.finished = true;
            return None;
        }
        Some(self.start)
    }

    /// Takes the success envelope of the page asked for at [`Cursor::next_start`].
    pub(crate) fn absorb(&mut self, envelope: &Value) -> Result<Absorbed<T>> {
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
            return Ok(Absorbed::End);
        }
        self.start = self.start.saturating_add(rows.len() as u64);
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
            return Ok(Absorbed::Page(page));
        }
        self.stale_pages += 1;
        if self.stale_pages >= MAX_STALE_PAGES {
            return Err(Error::InvalidResponse {
                endpoint: self.endpoint.into(),
                detail: "paging does not advance (pages repeat rows already seen)".into(),
            });
        }
        Ok(Absorbed::Stale)
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

#[cfg(test)]
mod properties {
    //! The paging rules against an in-memory DUELL: pages capped below what was asked for,
    //! with or without `total_count`, rows as a list or a PHP object, rows inserted in front
    //! while paging (offsets shift, rows repeat) and a server that ignores `start`.

    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Row {
        id: u64,
    }

    /// What `product/list`-like endpoints answer for `start`/`length`.
    fn answer(rows: &[u64], start: u64, length: u64, cap: u64, total: bool, object: bool) -> Value {
        let page: Vec<Value> = rows
            .iter()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take(length.min(cap) as usize)
            .map(|id| json!({ "id": id }))
            .collect();
        let page = if object {
            Value::Object(
                page.into_iter()
                    .enumerate()
                    .map(|(i, r)| (format!("k{i}"), r))
                    .collect(),
            )
        } else {
            Value::Array(page)
        };
        let mut envelope = json!({ "status": true, "rows": page });
        if total {
            // DUELL sends counts as numbers or strings.
            envelope["total_count"] = json!(rows.len().to_string());
        }
        envelope
    }

    fn cursor() -> Cursor<Row> {
        Cursor::new("test/list", "rows", |r: &Row| Some(r.id))
    }

    proptest! {
        #[test]
        fn every_row_comes_once_and_start_moves_by_the_rows_received(
            size in 0usize..400,
            length in 1u64..150,
            cap in 1u64..120,
            total in any::<bool>(),
            object in any::<bool>(),
        ) {
            let rows: Vec<u64> = (1..=size as u64).map(|i| i * 7).collect();
            let mut c = cursor();
            let (mut got, mut requests, mut expected_start) = (Vec::new(), 0, 0u64);
            while let Some(start) = c.next_start() {
                prop_assert_eq!(start, expected_start);
                requests += 1;
                prop_assert!(requests <= size + 2, "paging does not end");
                let envelope = answer(&rows, start, length, cap, total, object);
                let received = envelope["rows"].as_array().map(Vec::len)
                    .or_else(|| envelope["rows"].as_object().map(|m| m.len())).unwrap() as u64;
                match c.absorb(&envelope).unwrap() {
                    Absorbed::End => break,
                    Absorbed::Page(p) => got.extend(p.into_iter().map(|r| r.id)),
                    Absorbed::Stale => {}
                }
                expected_start += received;
                prop_assert_eq!(c.start, expected_start);
            }
            if object {
                // A PHP object's rows come in key order, not necessarily the list's.
                got.sort_unstable();
            }
            prop_assert_eq!(&got, &rows);
            // Pages of min(length, cap) rows; without a total one more request sees the end.
            let full = size.div_ceil(length.min(cap) as usize);
            let want = if total { full } else { full + 1 };
            prop_assert_eq!(requests, want.max(1));
        }

        #[test]
        fn rows_shifted_by_inserts_in_front_are_not_handed_out_twice(
            size in 1usize..300,
            cap in 1u64..100,
            inserts in prop::collection::vec(0usize..5, 0..20),
        ) {
            let mut rows: Vec<u64> = (1..=size as u64).collect();
            let original = rows.clone();
            let mut next_new = 1_000_000u64;
            let mut c = cursor();
            let mut got = Vec::new();
            let mut pages = 0;
            let mut stuck = false;
            while let Some(start) = c.next_start() {
                let envelope = answer(&rows, start, 100, cap, true, false);
                match c.absorb(&envelope) {
                    Ok(Absorbed::End) => break,
                    Ok(Absorbed::Page(p)) => got.extend(p.into_iter().map(|r| r.id)),
                    Ok(Absorbed::Stale) => {}
                    // Many inserts can make several pages in a row repeat old rows only.
                    Err(Error::InvalidResponse { .. }) => {
                        stuck = true;
                        break;
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
                // New products appear in front between two page requests.
                for _ in 0..inserts.get(pages).copied().unwrap_or(0) {
                    rows.insert(0, next_new);
                    next_new += 1;
                }
                pages += 1;
            }
            let mut unique = got.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), got.len(), "a row was handed out twice");
            // Inserts in front only push rows back: none of the original rows is lost unless
            // paging was declared stuck.
            if !stuck {
                for id in &original {
                    prop_assert!(got.contains(id));
                }
            }
        }

        #[test]
        fn a_server_that_ignores_start_is_declared_stuck(size in 1usize..50, cap in 1u64..20) {
            let rows: Vec<u64> = (1..=size as u64).collect();
            let mut c = cursor();
            let mut outcome = None;
            for _ in 0..(size + 10) {
                let Some(_) = c.next_start() else { break };
                // Always the first page, whatever `start` says; no total.
                match c.absorb(&answer(&rows, 0, 100, cap, false, false)) {
                    Ok(Absorbed::Page(_)) | Ok(Absorbed::Stale) => {}
                    other => { outcome = Some(other.map(|_| ())); break; }
                }
            }
            prop_assert!(matches!(outcome, Some(Err(Error::InvalidResponse { .. }))), "{:?}", outcome);
        }
    }
}
