//! `hosts remove --drain`: the host's server is set to `drain` through the runtime API, and the
//! command waits until HAProxy shows no session on it (or the timeout), so that the run that
//! then takes it out of haproxy.cfg does so through the runtime API, with no reload and no
//! connection cut.

use std::time::{Duration, Instant};

use crate::config::{Config, PoolConfig, StatsSource};
use crate::haproxy::admin_socket;

use super::error::HostsError;

/// How long one runtime command or stats read may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How often the sessions are read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Drains `name` of `pool` and waits for its sessions to end; what it did, for the operator.
pub(super) fn drain_out(
    config: &Config,
    pool: &PoolConfig,
    name: &str,
    timeout_s: u64,
) -> Result<String, HostsError> {
    let failed = |why: String| HostsError::Drain {
        pool: pool.name.clone(),
        name: name.to_owned(),
        why,
    };
    let Some(StatsSource::Socket(socket)) = &config.haproxy.stats else {
        return Err(failed(
            "the runtime API needs `[haproxy] stats_socket`".to_owned(),
        ));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| failed(error.to_string()))?;
    runtime.block_on(async {
        let source = StatsSource::Socket(socket.clone());
        let sessions = async || -> Result<Option<u64>, HostsError> {
            let (_, rows) = admin_socket::read_stats(&source, TIMEOUT)
                .await
                .map_err(|error| failed(crate::error_chain::error_chain(&error)))?;
            Ok(rows
                .iter()
                .find(|row| row.proxy == pool.backend && row.name == name)
                .map(|row| row.scur))
        };
        if sessions().await?.is_none() {
            return Ok(format!(
                "host {name} is not in HAProxy's backend {}: nothing to drain",
                pool.backend
            ));
        }
        let server = format!("{}/{name}", pool.backend);
        admin_socket::set_state(socket, &server, "drain", TIMEOUT)
            .await
            .map_err(|error| failed(crate::error_chain::error_chain(&error)))?;
        let started = Instant::now();
        loop {
            let left = sessions().await?.unwrap_or(0);
            let waited = started.elapsed().as_secs();
            if left == 0 {
                return Ok(format!(
                    "drained server {server}: no session left after {waited} s"
                ));
            }
            if waited >= timeout_s {
                return Ok(format!(
                    "drained server {server}: {left} session(s) still open after {timeout_s} s (--drain-timeout-s); removed anyway"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    })
}
