//! The orchestrator: the only place that strings the steps of a run together.
//!
//! validate config and template → lock → load state → observe (cloud, installed haproxy.cfg) →
//! plan (pure) → `--plan`: report it / otherwise: apply it → report. `--plan` takes no lock and
//! writes nothing: every file it reads is replaced only by atomic renames, so it always sees
//! whole files.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

use crate::apply::apply;
use crate::cli::{Cli, Format};
use crate::cloud::Provider;
use crate::cloud::ec2::Ec2;
use crate::config::Config;
use crate::error::{EXIT_CHANGES_PENDING, Error};
use crate::haproxy::install::read_installed;
use crate::haproxy::render::Renderer;
use crate::plan::{self, Facts, Observed, Plan};
use crate::state::{self, StateLock};

/// What a run did or would do.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `plan` with `--plan`, `apply` otherwise.
    pub mode: &'static str,
    /// True if the run changed (or with `--plan`, would change) the config or the state.
    pub changes: bool,
    pub plan: Plan,
}

/// Runs the command line and prints the report; returns the exit code of a successful run.
pub fn main(cli: &Cli) -> Result<u8, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let report = runtime.block_on(run(cli))?;
    print(cli, &report);
    Ok(if cli.plan && cli.detailed_exitcode && report.changes {
        EXIT_CHANGES_PENDING
    } else {
        0
    })
}

/// Validates everything, then reconciles once (or plans, with `--plan`).
pub async fn run(cli: &Cli) -> Result<Report, Error> {
    let config = Config::from_cli(cli)?;
    let renderer = Renderer::load(&config.haproxy.template).map_err(Error::Template)?;
    let started = Instant::now();
    let provider = Ec2::connect(&config.aws).await?;
    tracing::debug!("AWS client ready in {:?}", started.elapsed());
    reconcile(&config, &renderer, &provider, cli.plan).await
}

/// One reconcile with a given provider: the whole run after validation.
pub async fn reconcile(
    config: &Config,
    renderer: &Renderer,
    provider: &impl Provider,
    plan_only: bool,
) -> Result<Report, Error> {
    let _lock = if plan_only {
        None
    } else {
        Some(StateLock::acquire(&config.state_path)?)
    };
    let loaded = state::load(&config.state_path)?;
    let mut observed = Vec::with_capacity(config.pools.len());
    for pool in &config.pools {
        let started = Instant::now();
        let instances = provider.list(pool).await?;
        tracing::info!(
            "pool `{}`: {} instance(s) listed in {:?}",
            pool.name,
            instances.len(),
            started.elapsed()
        );
        observed.push(Observed {
            pool: pool.name.clone(),
            instances,
        });
    }
    let installed = read_installed(&config.haproxy.config)?;
    let plan = plan::build(
        Facts {
            config,
            observed: &observed,
            installed: installed.as_deref(),
            state: &loaded.state,
        },
        renderer,
    )?;
    let changes = plan.has_changes(&loaded.state);
    if plan_only {
        return Ok(Report {
            mode: "plan",
            changes,
            plan,
        });
    }
    apply(config, &plan, &loaded).await?;
    Ok(Report {
        mode: "apply",
        changes,
        plan,
    })
}

fn print(cli: &Cli, report: &Report) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) must not turn a successful run into a failure.
    let _ = match cli.format {
        Format::Json => serde_json::to_writer_pretty(&mut stdout, report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout)),
        Format::Text if cli.plan => write!(stdout, "{}", report.plan),
        Format::Text => {
            if !cli.quiet {
                for warning in &report.plan.warnings {
                    eprintln!("warning: {warning}");
                }
            }
            report
                .plan
                .actions
                .iter()
                .filter(|_| !cli.quiet)
                .try_for_each(|action| writeln!(stdout, "{action}"))
        }
    };
}
