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
                "the pool's command failed or printed something else than the documented JSON (see the exec provider in the book, docs/src/configuration.md): nothing changed; fix the command"
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
///
/// Each provider implements it in its own file ([`ec2::Ec2`], [`exec::Exec`],
/// [`static_hosts::StaticHosts`], and the tests' fake); [`Clouds`] serves each pool with the one
/// its config names.
pub(crate) trait Provider {
    /// Lists the pending and running instances matching the pool's discovery filters, and for
    /// a scaling pool also those tagged `haproxy-autoscaler:pool = NAME`.
    fn list(&self, pool: &PoolConfig) -> impl Future<Output = Result<Vec<Instance>, CloudError>>;

    /// Whether `list` already shows every instance a launch made that can still be running, so
    /// that a launch token is looked up in the listing and `find_by_token` is not asked. EC2's
    /// listing leaves out stopped and stopping instances; an exec provider's look-up is its
    /// list command, once per run is enough.
    fn lists_every_launch(&self, _pool: &PoolConfig) -> bool {
        false
    }

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

/// A provider call that cannot be made as the config pairs it: a launch or termination with
/// another provider's launcher or of a pool that does not launch, or an EC2 pool with no client.
/// Validation and `connect` rule these out, so only a bug makes one: that pool's call fails
/// (fatal), never the process.
pub(crate) fn fatal_call(pool: &PoolConfig, operation: Operation, why: &str) -> CloudError {
    CloudError {
        pool: pool.name.clone(),
        operation,
        kind: CloudErrorKind::Fatal,
        cause: Cause::Api(why.to_owned()),
    }
}

/// The providers of a run: each pool is served by the one its config names.
#[derive(Debug, Default)]
pub(crate) struct Clouds {
    /// Connected only when some pool uses EC2, so exec-only configs need no AWS setup.
    pub ec2: Option<ec2::Ec2>,
}

/// The provider serving one pool.
enum Serving<'a> {
    Ec2(&'a ec2::Ec2),
    Exec(exec::Exec<'a>),
    Static(static_hosts::StaticHosts<'a>),
}

/// Calls one [`Provider`] method on whichever provider serves a pool.
macro_rules! served {
    ($serving:expr, $provider:ident => $call:expr) => {
        match $serving {
            Serving::Ec2($provider) => $call,
            Serving::Exec(ref $provider) => $call,
            Serving::Static(ref $provider) => $call,
        }
    };
}

impl Clouds {
    /// The provider a pool's config names: the one place a new provider is constructed. The
    /// EC2 client is connected whenever a pool names EC2; were it not, the pool's call fails
    /// (fatal), never the process.
    fn serving<'a>(
        &'a self,
        pool: &'a PoolConfig,
        operation: Operation,
    ) -> Result<Serving<'a>, CloudError> {
        Ok(match &pool.provider {
            ProviderKind::Ec2 => Serving::Ec2(self.ec2.as_ref().ok_or_else(|| {
                fatal_call(pool, operation, "no EC2 client was connected for this pool")
            })?),
            ProviderKind::Exec(commands) => Serving::Exec(exec::Exec::new(commands)),
            ProviderKind::Static(dir) => Serving::Static(static_hosts::StaticHosts::new(dir)),
        })
    }
}

impl Provider for Clouds {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        served!(self.serving(pool, Operation::List)?, provider => provider.list(pool).await)
    }

    fn lists_every_launch(&self, pool: &PoolConfig) -> bool {
        // Without its provider the look-up is asked, and fails as the provider's other calls.
        self.serving(pool, Operation::FindLaunch)
            .is_ok_and(|serving| served!(serving, provider => provider.lists_every_launch(pool)))
    }

    async fn find_by_token(
        &self,
        pool: &PoolConfig,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        served!(
            self.serving(pool, Operation::FindLaunch)?,
            provider => provider.find_by_token(pool, token).await
        )
    }

    async fn launch(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        count: u32,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        served!(
            self.serving(pool, Operation::Launch)?,
            provider => provider.launch(pool, launcher, count, token).await
        )
    }

    async fn terminate(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        ids: &[String],
    ) -> Result<(), CloudError> {
        served!(
            self.serving(pool, Operation::Terminate)?,
            provider => provider.terminate(pool, launcher, ids).await
        )
    }
}
