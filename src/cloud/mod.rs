//! Cloud providers: where a pool's instances are listed.
//!
//! A provider is a small trait so that the orchestrator never sees a concrete cloud; `aws_sdk_ec2`
//! types stay inside [`ec2`]. Listing is read-only; a failed listing is an error, never an empty
//! list (invariant 7: no decision from missing data).

pub(crate) mod aws;
pub(crate) mod ec2;
pub(crate) mod exec;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod static_hosts;

use std::fmt;
use std::future::Future;

use serde::Serialize;

use crate::config::{Launcher, PoolConfig, ProviderKind};
use crate::model::Instance;

/// How a cloud error should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudErrorKind {
    /// The cloud asked us to slow down; a later run will likely succeed.
    Throttled,
    /// A network problem, timeout or server error; a later run will likely succeed.
    Transient,
    /// The request was refused as given (permissions, bad filter, bad credentials).
    Rejected,
    /// The operator's command printed something else than the documented JSON, or failed.
    Command,
    /// Anything else.
    Fatal,
}

impl fmt::Display for CloudErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloudErrorKind::Throttled => "throttled",
            CloudErrorKind::Transient => "transient",
            CloudErrorKind::Rejected => "rejected",
            CloudErrorKind::Command => "command",
            CloudErrorKind::Fatal => "fatal",
        })
    }
}

impl CloudErrorKind {
    /// What the operator can expect or do, in words.
    pub fn hint(self) -> &'static str {
        match self {
            CloudErrorKind::Throttled => {
                "the cloud is throttling requests; the next run tries again"
            }
            CloudErrorKind::Transient => "a temporary failure; the next run tries again",
            CloudErrorKind::Rejected => {
                "the cloud refused the request: check the credentials, permissions and the pool's settings"
            }
            CloudErrorKind::Command => {
                "the pool's command failed or printed something else than the documented JSON (see the README's exec provider): nothing changed; fix the command"
            }
            CloudErrorKind::Fatal => "the run stopped here; the next run starts over",
        }
    }
}

/// What a provider was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    List,
    /// Find the instances launched with a token.
    FindLaunch,
    Launch,
    Terminate,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::List => "list the instances",
            Operation::FindLaunch => "look up a launch",
            Operation::Launch => "launch instances",
            Operation::Terminate => "terminate instances",
        })
    }
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// What the cloud's API answered, in words: the SDK's own errors are debug dumps.
    #[error("{0}")]
    Api(String),
    /// The operator's command failed, timed out or could not start.
    #[error(transparent)]
    Command(#[from] crate::command::CommandError),
    /// The operator's command printed something else than the documented JSON.
    #[error("`{command}` printed output that is not the documented JSON: {problem}")]
    Output { command: String, problem: String },
    /// A failure a test injected.
    #[cfg(test)]
    #[error("injected failure")]
    Injected,
}

/// A provider call that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {operation} of pool `{pool}` ({})", kind.hint())]
pub struct CloudError {
    pub pool: String,
    pub operation: Operation,
    pub kind: CloudErrorKind,
    #[source]
    pub cause: Cause,
}

/// A source of instances, and for scaling pools, a way to launch and terminate them.
pub(crate) trait Provider {
    /// Lists the pending and running instances matching the pool's discovery filters, and for
    /// a scaling pool also those tagged `haproxy-autoscaler:pool = NAME`.
    fn list(&self, pool: &PoolConfig) -> impl Future<Output = Result<Vec<Instance>, CloudError>>;

    /// The ids of the instances (in any state but terminated) launched with `token`.
    fn find_by_token(
        &self,
        pool: &PoolConfig,
        token: &str,
    ) -> impl Future<Output = Result<Vec<String>, CloudError>>;

    /// Launches `count` instances tagged for the pool and with `token`; returns their ids.
    fn launch(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        count: u32,
        token: &str,
    ) -> impl Future<Output = Result<Vec<String>, CloudError>>;

    /// Terminates instances of the pool.
    fn terminate(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        ids: &[String],
    ) -> impl Future<Output = Result<(), CloudError>>;
}

/// The providers of a run: each pool is served by the one its config names.
#[derive(Debug, Default)]
pub(crate) struct Clouds {
    /// Connected only when some pool uses EC2, so exec-only configs need no AWS setup.
    pub ec2: Option<ec2::Ec2>,
}

impl Clouds {
    /// The EC2 client, for a pool whose config names EC2: connected whenever one does; were it
    /// not, the pool's call fails (fatal), never the process.
    fn ec2(&self, pool: &PoolConfig, operation: Operation) -> Result<&ec2::Ec2, CloudError> {
        self.ec2.as_ref().ok_or_else(|| CloudError {
            pool: pool.name.clone(),
            operation,
            kind: CloudErrorKind::Fatal,
            cause: Cause::Api("no EC2 client was connected for this pool".to_owned()),
        })
    }
}

impl Provider for Clouds {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        match &pool.provider {
            ProviderKind::Ec2 => self.ec2(pool, Operation::List)?.list(pool).await,
            ProviderKind::Exec(commands) => exec::list(pool, commands).await,
            ProviderKind::Static(dir) => static_hosts::list(pool, dir),
        }
    }

    async fn find_by_token(
        &self,
        pool: &PoolConfig,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        match &pool.provider {
            ProviderKind::Ec2 => {
                self.ec2(pool, Operation::FindLaunch)?
                    .find_by_token(pool, token)
                    .await
            }
            ProviderKind::Exec(commands) => exec::find_by_token(pool, commands, token).await,
            // A static pool never launches.
            ProviderKind::Static(_) => Ok(Vec::new()),
        }
    }

    async fn launch(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        count: u32,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        match launcher {
            Launcher::Ec2(launch) => {
                self.ec2(pool, Operation::Launch)?
                    .launch(pool, launch, count, token)
                    .await
            }
            Launcher::Exec {
                launch, timeout, ..
            } => exec::launch(pool, launch, *timeout, count, token).await,
        }
    }

    async fn terminate(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        ids: &[String],
    ) -> Result<(), CloudError> {
        match launcher {
            Launcher::Ec2(_) => {
                self.ec2(pool, Operation::Terminate)?
                    .terminate(pool, ids)
                    .await
            }
            Launcher::Exec {
                terminate, timeout, ..
            } => exec::terminate(pool, terminate, *timeout, ids).await,
        }
    }
}
