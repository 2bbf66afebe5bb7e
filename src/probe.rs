//! Readiness probes of new servers, made by the run from the load balancer before a server
//! takes traffic (HAProxy 2.6 counts a new server UP before its first check).
//!
//! Probes run concurrently (at most [`IN_FLIGHT`] at a time) under one deadline for all, so
//! thirty stalled health endpoints cost one probe timeout, not thirty.

use std::time::Duration;

use crate::config::ReadyCheck;
use crate::http;
use crate::model::Endpoint;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long all the probes of a pool may take together.
const ALL_PROBES_DEADLINE: Duration = Duration::from_secs(5);
/// Most probes in flight at once.
const IN_FLIGHT: usize = 256;

/// Probes every `(id, endpoint)` with `check`; an id is ready if its probe passed before the
/// common deadline.
pub(crate) async fn ready_all(
    check: &ReadyCheck,
    targets: Vec<(String, Endpoint)>,
) -> std::collections::BTreeMap<String, bool> {
    let mut results: std::collections::BTreeMap<String, bool> =
        targets.iter().map(|(id, _)| (id.clone(), false)).collect();
    let deadline = tokio::time::Instant::now() + ALL_PROBES_DEADLINE;
    let mut waiting = targets.into_iter();
    let mut running = tokio::task::JoinSet::new();
    let mut spawn_next = |running: &mut tokio::task::JoinSet<(String, bool)>| {
        if let Some((id, endpoint)) = waiting.next() {
            let check = check.clone();
            running.spawn(async move { (id, ready(&check, &endpoint).await) });
        }
    };
    for _ in 0..IN_FLIGHT {
        spawn_next(&mut running);
    }
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, running.join_next()).await {
        if let Ok((id, ready)) = done {
            results.insert(id, ready);
        }
        spawn_next(&mut running);
    }
    // Past the deadline, what has not answered is not ready; dropping the set aborts the rest.
    results
}

/// True if the server at `endpoint` passes `check`.
pub(crate) async fn ready(check: &ReadyCheck, endpoint: &Endpoint) -> bool {
    let address = endpoint.to_string();
    let outcome = match check {
        ReadyCheck::None => return true,
        ReadyCheck::Tcp => {
            match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&address))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(NotReady::Connect(error)),
                Err(_) => Err(NotReady::TimedOut),
            }
        }
        ReadyCheck::Http(path) => {
            match http::get(&format!("http://{address}{path}"), PROBE_TIMEOUT).await {
                Ok(response) if (200..400).contains(&response.status) => Ok(()),
                Ok(response) => Err(NotReady::Status(response.status)),
                Err(error) => Err(NotReady::Http(error)),
            }
        }
    };
    if let Err(reason) = &outcome {
        tracing::info!("server {address} not ready yet: {reason}");
    }
    outcome.is_ok()
}

/// Why a probe did not pass.
#[derive(Debug, thiserror::Error)]
enum NotReady {
    #[error("timed out")]
    TimedOut,
    #[error(transparent)]
    Connect(std::io::Error),
    #[error("answered {0}")]
    Status(u16),
    #[error(transparent)]
    Http(http::HttpError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10, class 12: stalled endpoints are probed at once, under one deadline: thirty of
    /// them cost about one probe timeout, not thirty.
    #[tokio::test]
    async fn class_12_stalled_probes_share_one_deadline() {
        // Listeners that accept nothing back: a TCP connect succeeds (backlog), an HTTP probe
        // stalls waiting for an answer.
        let mut listeners = Vec::new();
        let mut targets = Vec::new();
        for n in 0..30 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            targets.push((
                format!("i-{n}"),
                Endpoint {
                    host: "127.0.0.1".to_owned(),
                    port,
                },
            ));
            listeners.push(listener);
        }
        // One that answers at once, among them.
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_port = good.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = good.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        targets.push((
            "i-good".to_owned(),
            Endpoint {
                host: "127.0.0.1".to_owned(),
                port: good_port,
            },
        ));
        let started = std::time::Instant::now();
        let results = ready_all(&ReadyCheck::Http("/health".into()), targets).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "took {took:?}");
        assert_eq!(results.len(), 31);
        assert!(results["i-good"]);
        assert!(
            results
                .iter()
                .filter(|(id, _)| *id != "i-good")
                .all(|(_, ready)| !ready)
        );
        drop(listeners);
    }
}
