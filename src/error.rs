//! The top-level error and the one place that maps errors to exit codes.

use crate::cloud::CloudError;
use crate::cloud::aws::NoRegion;
use crate::config::ConfigError;
use crate::decide::plan::PlanError;
use crate::decide::render::RenderError;
use crate::haproxy::install::InstallError;
use crate::store::StateError;

/// Exit code of a run that did what it had to.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code of a run that failed (cloud, HAProxy, reload, state).
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit code of bad usage or an invalid config or template.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code with `--plan --detailed-exitcode` when changes are pending.
pub(crate) const EXIT_CHANGES_PENDING: u8 = 4;
/// Exit code when another run holds the lock, or the shared state cannot be reached or was
/// changed by another node meanwhile (`EX_TEMPFAIL`).
pub(crate) const EXIT_LOCKED: u8 = 75;

/// Anything that ends a run early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Region(#[from] NoRegion),
    /// The template named by `haproxy.template` in `config` cannot be read or compiled.
    #[error("{config}: `haproxy.template` cannot be used")]
    Template {
        config: String,
        #[source]
        error: RenderError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Trace(#[from] crate::simulate::trace::TraceError),
    #[error(transparent)]
    Simulate(#[from] crate::simulate::SimulateError),
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    #[error(transparent)]
    Hosts(#[from] crate::hosts::HostsError),
    #[error("cannot write to stdout")]
    Stdout(#[source] std::io::Error),
    #[error("cannot write the manual pages into `{}`", dir.display())]
    Manual {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw the plot")]
    Plot(#[source] crate::simulate::plot::PlotError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Verb(#[from] crate::verbs::VerbError),
    #[error(transparent)]
    StalePlan(#[from] crate::saved_plan::StalePlan),
    #[error("cannot write the plan to `{}`", path.display())]
    SavePlan {
        path: std::path::PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// A `--pool` the config has no scaling pool of.
    #[error("the config has no scaling pool `{pool}`; its scaling pools: {pools}")]
    UnknownPool { pool: String, pools: String },
    /// The config says `enabled = false`.
    #[error(
        "{config} says `enabled = false`, so this run did nothing: edit the config, see what a run would do with `haproxy-autoscaler check` and `--plan`, then set `enabled = true`"
    )]
    Disabled { config: String },
    /// Stopped by a signal; the commands it was running were killed.
    #[error(
        "stopped by {signal}; the commands it was running were killed, and the next run finishes the job"
    )]
    Stopped {
        signal: &'static str,
        /// 128 + the signal's number, as a shell reports a process it killed.
        code: u8,
    },
}

impl Error {
    /// Not a failed run: another run holds the lock, or another node changed the shared state
    /// first. It did nothing, the other is doing the job, and the next run goes on.
    pub fn is_someone_elses_turn(&self) -> bool {
        matches!(
            self,
            Error::State(StateError::Busy { .. } | StateError::Raced { .. })
        )
    }

    /// The process exit code for this error.
    #[allow(
        clippy::match_same_arms,
        reason = "the arms are tried in order, each kept apart with its reason"
    )]
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Region(_)
            | Error::Template { .. }
            | Error::Trace(_)
            | Error::Simulate(_)
            | Error::Init(
                crate::init::InitError::Exists(_) | crate::init::InitError::OneFileTwice(_),
            )
            | Error::UnknownPool { .. }
            | Error::Verb(_)
            | Error::Disabled { .. } => EXIT_USAGE,
            Error::Hosts(error) if error.is_usage() => EXIT_USAGE,
            Error::StalePlan(crate::saved_plan::StalePlan::Changed { .. }) => {
                crate::saved_plan::EXIT_STALE_PLAN
            }
            Error::StalePlan(_) => EXIT_USAGE,
            // A template that fails on the data (a missing variable) is an invalid template; a
            // value refused as unsafe is a problem with the data, so the run failed.
            Error::Plan(PlanError::Render(RenderError::UnsafeValue { .. })) => EXIT_FAILED,
            Error::Plan(PlanError::Render(_)) => EXIT_USAGE,
            // Temporary: the next run (a minute later) tries again.
            Error::State(
                StateError::Busy { .. } | StateError::Unreachable { .. } | StateError::Raced { .. },
            ) => EXIT_LOCKED,
            // Two configs on one state file: a config mistake, found before anything changed.
            Error::State(StateError::OtherConfig { .. }) => EXIT_USAGE,
            Error::State(_)
            | Error::Cloud(_)
            | Error::Plan(_)
            | Error::Install(_)
            | Error::Plot(_)
            | Error::Init(_)
            | Error::Hosts(_)
            | Error::Stdout(_)
            | Error::Manual { .. }
            | Error::SavePlan { .. }
            | Error::Runtime(_) => EXIT_FAILED,
            Error::Stopped { code, .. } => *code,
        }
    }
}

impl From<crate::apply::ApplyError> for Error {
    fn from(error: crate::apply::ApplyError) -> Error {
        match error {
            crate::apply::ApplyError::State(error) => Error::State(error),
            crate::apply::ApplyError::Cloud(error) => Error::Cloud(error),
            crate::apply::ApplyError::Install(error) => Error::Install(error),
        }
    }
}
