//! Reading a request body under a size limit, without copying when it arrives in one piece.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the limit (declared or actual): 413.
    TooLarge,
    /// The connection broke or the body was not valid HTTP framing: 400.
    Broken,
}

/// The declared `Content-Length`, if it is a number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How much of an oversize body we read and discard before answering 413. Closing a socket with
/// unread data makes the kernel send a reset, which can destroy our answer before the client
/// reads it; draining lets a well-behaved sender see the 413. Beyond this we give up on it.
const DRAIN_FACTOR: usize = 4;
/// Longest time spent draining an oversize body.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads the whole body, refusing more than `limit` bytes. Nothing over the limit is kept in
/// memory: the rest of an oversize body is drained (bounded) and discarded.
pub(crate) async fn read(
    body: Body,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut stream, limit).await;
        return Err(BodyError::TooLarge);
    }
    // Most bodies arrive as one frame: keep it as is. Only a second frame makes us copy.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if chunk.is_empty() {
            continue;
        }
        total = total.saturating_add(chunk.len());
        if total > limit {
            drain(&mut stream, limit).await;
            return Err(BodyError::TooLarge);
        }
        if let Some(buf) = joined.as_mut() {
            buf.extend_from_slice(&chunk);
        } else if let Some(head) = first.take() {
            let hint = declared
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
                .clamp(total, limit);
            let mut buf = BytesMut::with_capacity(hint);
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&chunk);
            joined = Some(buf);
        } else {
            first = Some(chunk);
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

async fn drain(stream: &mut BodyDataStream, limit: usize) {
    let cap = limit.saturating_mul(DRAIN_FACTOR);
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len());
            if seen > cap {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let parts: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures::stream::iter(parts))
    }

    #[tokio::test]
    async fn joins_frames_and_keeps_a_single_frame_as_is() {
        assert_eq!(
            read(chunked(&[b"ab", b"", b"cd"]), None, 10).await.unwrap(),
            Bytes::from_static(b"abcd")
        );
        assert_eq!(
            read(Body::from("xyz"), Some(3), 10).await.unwrap(),
            Bytes::from_static(b"xyz")
        );
        assert!(read(Body::empty(), None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit_declared_or_not() {
        assert_eq!(
            read(Body::from("x"), Some(11), 10).await,
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            read(chunked(&[b"123456", b"78901"]), None, 10).await,
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            read(Body::from("exactly 10"), None, 10)
                .await
                .unwrap()
                .len(),
            10
        );
    }
}
