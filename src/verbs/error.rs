//! Why a verb changed nothing. Below the command (and the top-level error, which wraps it), so
//! that neither imports the other's file in a cycle.

/// Why a verb changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    #[error("`{0}` is not POOL/SERVER (for example `web/i-0123`)")]
    BadTarget(String),
    #[error("the config has no pool `{pool}`; its pools: {pools}")]
    UnknownPool { pool: String, pools: String },
    #[error(
        "pool `{pool}` has no server `{server}` in the last run's haproxy.cfg; its servers: {servers}"
    )]
    UnknownServer {
        pool: String,
        server: String,
        servers: String,
    },
    #[error(
        "pool `{0}` does not scale: this tool never terminates its servers; use `maintenance {0}/SERVER on` to take one out of traffic (for a static pool: `hosts remove --drain`)"
    )]
    NotScaling(String),
    #[error("server `{server}` of pool `{pool}` may not be drained: {why}")]
    NotDrainable {
        pool: String,
        server: String,
        why: String,
    },
}
