//! Reading an answer from an outside system (DUELL, a WooCommerce store, a proxy or plugin in
//! front of it) under a size limit, so that a runaway body cannot take the service's memory.
#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};

/// Why a body was not read.
#[derive(Debug)]
pub enum Capped {
    /// Larger than the limit, as declared (`Content-Length`) or as it arrived.
    TooLarge,
    /// The connection failed while reading.
    Read(reqwest::Error),
}

/// Reads a body of at most `limit` bytes. A larger one is refused without buffering more than
/// the limit: at once when its declared length says so, else as soon as it grows past it.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, Capped> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Capped::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(Capped::Read)? {
        if buf.len() + chunk.len() > limit {
            return Err(Capped::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static str) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn a_body_up_to_the_limit_is_read_whole() {
        let body = read_capped(answer("{\"id\":1}"), 8).await.unwrap();
        assert_eq!(&body[..], b"{\"id\":1}");
        let empty = read_capped(answer(""), 0).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let refused = read_capped(answer("{\"id\":12}"), 8).await;
        assert!(matches!(refused, Err(Capped::TooLarge)), "{refused:?}");
    }
}
