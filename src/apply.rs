//! Carries out a [`Plan`]: the only module that changes the world.
//!
//! It makes no decisions: the config is installed and HAProxy reloaded if the plan says the config
//! changed, then the plan's next state is saved if it differs from the loaded one. If installing or
//! reloading fails, the state is not saved, so the next run sees the same facts and tries again.

use crate::config::Config;
use crate::haproxy::install::{self, InstallError};
use crate::plan::Plan;
use crate::state::{self, Loaded, StateError};

/// A step of the apply that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Applies `plan`, made from `loaded`.
pub async fn apply(config: &Config, plan: &Plan, loaded: &Loaded) -> Result<(), ApplyError> {
    if plan.config.changed {
        install::install_and_reload(&config.haproxy, &plan.rendered).await?;
    }
    if plan.next_state != loaded.state {
        state::save(&config.state_path, &plan.next_state, &loaded.version)?;
    }
    Ok(())
}
