//! Why a `hosts` command changed nothing. Below the command (and the top-level error, which
//! wraps it), so that neither imports the other's file in a cycle.

use std::path::PathBuf;

/// Why a `hosts` command changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("the config has no pool with `provider = \"static\"`")]
    NoStaticPool,
    #[error("the config has several static pools ({0}): pick one with `--pool`")]
    Ambiguous(String),
    #[error("pool `{0}` is not a static pool (or does not exist); static pools: {1}")]
    NotStatic(String, String),
    #[error(
        "host name `{0}` cannot be an HAProxy server name: letters, digits, `-`, `_`, `.` and `:` only, not starting with `.`"
    )]
    BadName(String),
    #[error("`{value}` is not a plain `ADDRESS:PORT` ({problem})")]
    BadAddress { value: String, problem: String },
    #[error("pool `{pool}` already has host `{name}` (`{}`); remove it first", path.display())]
    Exists {
        pool: String,
        name: String,
        path: PathBuf,
    },
    #[error("pool `{pool}` has no host `{name}`")]
    Missing { pool: String, name: String },
    #[error("cannot drain host `{name}` of pool `{pool}`: {why}; it was not removed")]
    Drain {
        pool: String,
        name: String,
        why: String,
    },
    #[error("cannot {what} `{}`", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HostsError {
    /// A mistake in what was asked (exit 2), not a failure to do it.
    pub(crate) fn is_usage(&self) -> bool {
        !matches!(self, HostsError::Io { .. } | HostsError::Drain { .. })
    }
}
