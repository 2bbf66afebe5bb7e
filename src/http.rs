//! A minimal HTTP/1.0 GET over plain TCP, for loopback-side checks: HAProxy's CSV stats page and
//! readiness probes of new servers. No TLS, no redirects, bounded size and time. [`client`] is
//! the full HTTP/1.1 client (with TLS) for webhooks and Prometheus.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An HTTP/1.1 client for http:// and https:// URLs, TLS with the system's roots.
pub(crate) fn client() -> std::io::Result<
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// The most a response may hold.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// A GET that failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("`{0}` is not an http://HOST:PORT/PATH URL")]
    BadUrl(String),
    #[error("GET `{url}`: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("GET `{url}` did not answer within {}ms", after.as_millis())]
    Timeout { url: String, after: Duration },
    #[error("GET `{url}` answered {status:?}")]
    Status { url: String, status: String },
}

/// An answer: the status code and the body.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then_some((authority, path))
}

/// GETs `url`; any status is returned.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<Response, HttpError> {
    let (authority, path) = split(url).ok_or_else(|| HttpError::BadUrl(url.to_owned()))?;
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let timed_out = || HttpError::Timeout {
        url: url.to_owned(),
        after: timeout,
    };
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::TimedOut => timed_out(),
        _ => HttpError::Io {
            url: url.to_owned(),
            source,
        },
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let exchange = async {
        let mut stream = TcpStream::connect(&address).await.map_err(io)?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: haproxy-autoscaler\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let raw = crate::exchange::read_stream(stream, MAX_RESPONSE, deadline)
            .await
            .map_err(io)?;
        Ok::<_, HttpError>(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out())??;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HttpError::Status {
            url: url.to_owned(),
            status: status_line.to_owned(),
        })?;
    let chunked = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        // HAProxy's stats page answers chunked even to HTTP/1.0.
        dechunk(body).ok_or_else(|| HttpError::Status {
            url: url.to_owned(),
            status: "a malformed chunked body".to_owned(),
        })?
    } else {
        body.to_owned()
    };
    Ok(Response { status, body })
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut decoded = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(decoded);
        }
        decoded.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn urls() {
        assert_eq!(
            split("http://127.0.0.1:8404/stats;csv"),
            Some(("127.0.0.1:8404", "/stats;csv"))
        );
        assert_eq!(split("http://localhost"), Some(("localhost", "/")));
        assert_eq!(split("https://x/"), None);
        assert_eq!(split("http:///x"), None);
    }

    #[tokio::test]
    async fn gets_from_a_loopback_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("GET /ready HTTP/1.0\r\n"));
            socket
                .write_all(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nwait")
                .await
                .unwrap();
        });
        let response = get(
            &format!("http://127.0.0.1:{port}/ready"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((response.status, response.body.as_str()), (503, "wait"));
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n").as_deref(),
            Some("Wikipedia ")
        );
        assert_eq!(dechunk("0\r\n\r\n").as_deref(), Some(""));
        assert_eq!(dechunk("5\r\nabc"), None);
        assert_eq!(dechunk("zz\r\nabc\r\n"), None);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let error = get(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, HttpError::Timeout { .. }), "{error}");
        drop(listener);
    }
}
