//! Every byte the tool reads from the network goes through here (issue 29, class 2): an HTTP
//! answer's body (Prometheus, a webhook, S3) and a socket's answer (HAProxy's stats socket and
//! master CLI, the loopback stats page). Each read has a size cap and a deadline over the whole
//! exchange, so an endless answer, one sent without a length, or one trickled a byte a second
//! costs a bounded time and memory and ends in an error, never in a cut answer taken for whole.
//!
//! Files have their own bounded readers in `fs_atomic`, and a command's pipes theirs in
//! `command`; `tests/integration/architecture.rs` fails when code elsewhere reads by itself.

use std::io::{Error, ErrorKind};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::Connect;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// An answer larger than `limit` bytes.
fn too_large(limit: u64) -> Error {
    Error::new(
        ErrorKind::FileTooLarge,
        format!("the answer is larger than {}", bytes_text(limit)),
    )
}

/// No complete answer by the deadline.
fn too_slow(after: Duration) -> Error {
    Error::new(
        ErrorKind::TimedOut,
        format!("no complete answer within {}", seconds_text(after)),
    )
}

/// `4 MiB`, `64 KiB`, `100 bytes`.
fn bytes_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b.is_multiple_of(1 << 10) => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `10s`, `1.5s`: to the tenth of a second (a deadline's span is measured, not configured).
fn seconds_text(after: Duration) -> String {
    let tenths = (after.as_millis() + 50) / 100;
    if tenths.is_multiple_of(10) {
        format!("{}s", tenths / 10)
    } else {
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

/// Reads `reader` to its end: at most `limit` bytes, and only until `deadline`.
pub(crate) async fn read_stream(
    reader: impl AsyncRead + Unpin,
    limit: u64,
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut capped = reader.take(limit + 1);
    match tokio::time::timeout_at(deadline, capped.read_to_end(&mut answer)).await {
        Ok(Ok(_)) if answer.len() as u64 > limit => Err(too_large(limit)),
        Ok(Ok(_)) => Ok(answer),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(too_slow(deadline.saturating_duration_since(started))),
    }
}

/// Reads an HTTP body to its end: at most `limit` bytes, and only until `deadline`.
pub(crate) async fn read_body<B>(body: B, limit: u64, deadline: Instant) -> std::io::Result<Bytes>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let capped = usize::try_from(limit).unwrap_or(usize::MAX);
    let read = http_body_util::Limited::new(body, capped).collect();
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(error)) => Err(Error::other(format!("the answer was cut: {error}"))),
        Err(_) => Err(too_slow(deadline.saturating_duration_since(started))),
    }
}

/// The HTTP client of [`crate::http::client`], over connector `C`.
pub(crate) type Client<C> = Legacy<C, Full<Bytes>>;

/// An HTTP exchange that went wrong.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// No answer: the request could not be sent (connection refused, DNS, TLS) or was cut.
    Request(hyper_util::client::legacy::Error),
    /// No answer's head before the deadline.
    Timeout(Duration),
    /// An answer whose body is too large, too slow or cut.
    Body(Error),
}

/// Sends `request` and reads the answer's body, at most `limit` bytes, the whole exchange within
/// `within`: the status and the body.
pub(crate) async fn request<C>(
    client: &Client<C>,
    request: http::Request<Full<Bytes>>,
    limit: u64,
    within: Duration,
) -> Result<(http::StatusCode, Bytes), ExchangeError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let deadline = Instant::now() + within;
    let response = head(client, request, deadline, within).await?;
    let status = response.status();
    let body = read_body(response.into_body(), limit, deadline)
        .await
        .map_err(ExchangeError::Body)?;
    Ok((status, body))
}

/// Sends `request` and returns the answer's status, within `within`. The body is never read
/// (a webhook's answer carries nothing the tool needs): dropping it closes the connection.
pub(crate) async fn status_only<C>(
    client: &Client<C>,
    request: http::Request<Full<Bytes>>,
    within: Duration,
) -> Result<http::StatusCode, ExchangeError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let response = head(client, request, Instant::now() + within, within).await?;
    Ok(response.status())
}

/// The answer's head, by `deadline`.
async fn head<C>(
    client: &Client<C>,
    request: http::Request<Full<Bytes>>,
    deadline: Instant,
    within: Duration,
) -> Result<http::Response<hyper::body::Incoming>, ExchangeError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    tokio::time::timeout_at(deadline, client.request(request))
        .await
        .map_err(|_| ExchangeError::Timeout(within))?
        .map_err(ExchangeError::Request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_stream_is_read_whole_up_to_its_limit() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let answer = read_stream(&b"0123456789"[..], 10, deadline).await.unwrap();
        assert_eq!(answer, b"0123456789");
        let error = read_stream(&b"0123456789!"[..], 10, deadline)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::FileTooLarge);
        assert_eq!(error.to_string(), "the answer is larger than 10 bytes");
    }

    #[tokio::test]
    async fn a_trickled_stream_ends_at_the_deadline() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let trickle = tokio::spawn(async move {
            // A byte every 50 ms, for ever: each read makes progress, the whole never ends.
            while writer.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        let error = read_stream(reader, 1 << 20, started + Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "no complete answer within 0.3s");
        assert!(started.elapsed() < Duration::from_secs(2));
        trickle.abort();
    }

    #[tokio::test]
    async fn a_body_is_capped() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let body = http_body_util::Full::new(Bytes::from_static(b"{\"ok\":1}"));
        assert_eq!(
            read_body(body, 8, deadline).await.unwrap(),
            Bytes::from_static(b"{\"ok\":1}")
        );
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 65 * 1024]));
        let error = read_body(body, 64 * 1024, deadline).await.unwrap_err();
        assert_eq!(error.to_string(), "the answer is larger than 64 KiB");
    }

    #[test]
    fn sizes_and_durations_read_as_an_operator_writes_them() {
        assert_eq!(bytes_text(4 << 20), "4 MiB");
        assert_eq!(bytes_text(64 << 10), "64 KiB");
        assert_eq!(bytes_text(1000), "1000 bytes");
        assert_eq!(seconds_text(Duration::from_secs(10)), "10s");
        assert_eq!(seconds_text(Duration::from_millis(2500)), "2.5s");
        assert_eq!(seconds_text(Duration::from_micros(999_870)), "1s");
        assert_eq!(seconds_text(Duration::from_micros(299_990)), "0.3s");
    }
}
