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
    if let Some(pool) = config.pools.iter().find(|pool| pool.scaling.is_some()) {
        // The scaling engine is being built behind this guard: its config is validated, but a
        // run must not accept a scaling section it would silently ignore.
        return Err(Error::Config(crate::config::ConfigError::Invalid {
            origin: config.source.clone(),
            key: format!("pool `{}`: scaling", pool.name),
            message: "is validated but not yet carried out by this version; remove it".to_owned(),
        }));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fake::FakeCloud;
    use crate::cloud::{Instance, InstanceState};
    use std::path::Path;

    fn setup(dir: &Path) -> (Config, Renderer) {
        let text = format!(
            "[state]\npath = \"{0}/state.json\"\n[haproxy]\nconfig = \"{0}/haproxy.cfg\"\ncheck_command = [\"test\", \"-s\", \"{{config}}\"]\nreload_command = [\"true\"]\n\
[[pool]]\nname = \"web\"\nport = 80\n[pool.discover]\nsecurity_group = \"web\"\n\
[[pool]]\nname = \"api\"\nport = 81\n[pool.discover]\nsecurity_group = \"api\"\n",
            dir.display()
        );
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        let renderer = Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}} server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        (config, renderer)
    }

    fn instance(id: &str) -> Instance {
        Instance {
            id: id.to_owned(),
            state: InstanceState::Running,
            private_ip: Some("10.0.0.1".to_owned()),
            public_ip: None,
            launch_time: None,
            zone: None,
            image_id: None,
            tags: Default::default(),
        }
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                (
                    path.display().to_string(),
                    std::fs::read(&path).unwrap_or_default(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_failing_pool_listing_changes_nothing_for_any_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (config, renderer) = setup(dir.path());
        let cloud = FakeCloud::default();
        cloud.set("web", vec![instance("i-1")]);
        cloud.set("api", vec![instance("i-2")]);
        reconcile(&config, &renderer, &cloud, false).await.unwrap();
        let before = files(dir.path());

        cloud.set("web", vec![instance("i-1"), instance("i-3")]);
        cloud.fail("api", "list the instances");
        let error = reconcile(&config, &renderer, &cloud, false)
            .await
            .unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().contains("pool `api` (transient error)"),
            "{error}"
        );
        assert_eq!(files(dir.path()), before);
    }

    #[tokio::test]
    async fn plan_only_takes_no_lock_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (config, renderer) = setup(dir.path());
        let cloud = FakeCloud::default();
        cloud.set("web", vec![instance("i-1")]);
        cloud.set("api", vec![instance("i-2")]);
        let _held = StateLock::acquire(&config.state_path).unwrap();
        let before = files(dir.path());
        let report = reconcile(&config, &renderer, &cloud, true).await.unwrap();
        assert!(report.changes);
        assert_eq!(report.plan.actions.len(), 4, "{}", report.plan);
        assert_eq!(files(dir.path()), before);
    }
}
