//! Readiness probes of new servers, made by the run from the load balancer before a server
//! takes traffic (HAProxy 2.6 counts a new server UP before its first check).

use std::time::Duration;

use crate::config::ReadyCheck;
use crate::http;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// True if the server at `host:port` passes `check`.
pub async fn ready(check: &ReadyCheck, host: &str, port: u16) -> bool {
    let address = format!("{host}:{port}");
    let outcome = match check {
        ReadyCheck::None => return true,
        ReadyCheck::Tcp => {
            tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&address))
                .await
                .map(|connected| connected.map(drop).map_err(|error| error.to_string()))
                .unwrap_or_else(|_| Err("timed out".to_owned()))
        }
        ReadyCheck::Http(path) => {
            match http::get(&format!("http://{address}{path}"), PROBE_TIMEOUT).await {
                Ok(response) if (200..400).contains(&response.status) => Ok(()),
                Ok(response) => Err(format!("answered {}", response.status)),
                Err(error) => Err(error.to_string()),
            }
        }
    };
    if let Err(reason) = &outcome {
        tracing::info!("server {address} not ready yet: {reason}");
    }
    outcome.is_ok()
}
