//! haproxy-autoscaler: a one-shot reconciler that keeps HAProxy backends in sync with the cloud
//! instances of each pool. `ARCHITECTURE.md` at the repository root describes the parts and the
//! one-way flow of a run: config → observe → decide → apply → report.

pub(crate) mod app;
mod apply;
mod check;
pub(crate) mod cli;
mod cloud;
mod command;
pub(crate) mod config;
pub(crate) mod decide;
pub(crate) mod error;
mod error_chain;
mod exchange;
mod external;
pub(crate) mod failpoint;
mod fs_atomic;
pub(crate) mod haproxy;
mod history;
mod hosts;
mod http;
mod init;
pub(crate) mod logging;
mod manual;
mod metrics;
pub(crate) mod model;
mod notify;
mod observe;
mod probe;
mod reconcile;
pub(crate) mod report;
mod saved_plan;
pub(crate) mod simulate;
mod status;
pub(crate) mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod verbs;

/// What the binary, the integration tests, the benches and the fuzz targets use of the library,
/// and nothing else, at the paths of the modules it comes from: every module is private to the
/// crate, so code nothing reaches shows up as dead. Not an API: it changes with its users.
/// (The test builders are `testing`, built with the `testing` feature.)
#[doc(hidden)]
pub mod surface {
    pub mod app {
        pub use crate::app::{main, print_error};
    }
    pub mod cli {
        pub use crate::cli::Cli;
    }
    pub mod config {
        pub use crate::config::{Config, StatsSource};
    }
    pub mod decide {
        pub mod diff {
            pub use crate::decide::diff::unified;
        }
        pub mod installed_servers {
            pub use crate::decide::installed_servers::{ConfigLine, config_lines};
        }
        pub mod membership {
            pub use crate::decide::membership::BackendPlan;
        }
        pub mod plan {
            pub use crate::decide::plan::{Observations, Plan};
        }
        pub mod scaling {
            pub use crate::decide::scaling::{ScalingFacts, plan_scaling};
        }
    }
    pub mod failpoint {
        pub use crate::failpoint::{ENV, POINTS, WAIT_ENV};
    }
    pub mod haproxy {
        pub mod admin_socket {
            pub use crate::haproxy::admin_socket::{drain, read_stats};
        }
        pub mod runtime {
            pub use crate::haproxy::runtime::parse_servers_state;
        }
        pub mod stats {
            pub use crate::haproxy::stats::{MAX_STATS_BYTES, parse_show_info, parse_show_stat};
        }
    }
    pub mod logging {
        pub use crate::logging::init;
    }
    pub mod model {
        pub use crate::model::digest::sha256_hex;
        pub use crate::model::instance::Instance;
        pub use crate::model::state::PoolState;
        pub use crate::model::stats::{HaproxyVersion, OldWorkers, Row, StatsSnapshot, Status};
        pub use crate::model::token::is_format_character;
    }
    pub mod store {
        pub use crate::store::from_bytes;
    }
}
