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
use crate::cloud::Clouds;
use crate::cloud::Provider;
use crate::cloud::ec2::Ec2;
use crate::config::{Config, StatsSource};
use crate::error::{EXIT_CHANGES_PENDING, Error};
use crate::haproxy::install::{self, read_installed};
use crate::haproxy::master::Master;
use crate::haproxy::render::Renderer;
use crate::haproxy::runtime;
use crate::lifecycle::{self, OldWorkers, StatsSnapshot};
use crate::notify;
use crate::plan::{self, Facts, Observed, Plan};
use crate::probe;
use crate::state::{self, StateLock};

/// How long reading HAProxy's stats may take.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    let report = runtime.block_on(async {
        tokio::select! {
            outcome = run(cli) => outcome,
            signal = stop_signal() => {
                // Dropping the run's future stops it where it is, as a crash would (every step
                // is crash-safe); the commands it was running are killed as they are dropped.
                Err(Error::Stopped { signal: signal.0, code: signal.1 })
            }
        }
    })?;
    print(cli, &report);
    Ok(if cli.plan && cli.detailed_exitcode && report.changes {
        EXIT_CHANGES_PENDING
    } else {
        0
    })
}

/// Resolves when the run is asked to stop (SIGTERM, SIGINT, SIGHUP), with the signal's name and
/// the exit code that reports it (128 + its number).
async fn stop_signal() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => ("SIGTERM", 143),
        _ = int.recv() => ("SIGINT", 130),
        _ = hup.recv() => ("SIGHUP", 129),
    }
}

/// Validates everything, then reconciles once (or plans, with `--plan`).
pub async fn run(cli: &Cli) -> Result<Report, Error> {
    let config = Config::from_cli(cli)?;
    let renderer = Renderer::load(&config.haproxy.template).map_err(|error| Error::Template {
        config: config.source.to_string(),
        error,
    })?;
    let started = Instant::now();
    let uses_ec2 = config
        .pools
        .iter()
        .any(|pool| pool.provider == crate::config::ProviderKind::Ec2);
    let provider = Clouds {
        ec2: if uses_ec2 {
            Some(Ec2::connect(&config.aws).await?)
        } else {
            None
        },
    };
    if uses_ec2 {
        tracing::info!("AWS client: {:?}", started.elapsed());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    let outcome = reconcile(&config, &renderer, &provider, cli.plan, now).await;
    if !cli.plan {
        notify_outcome(&config, &outcome, now).await;
    }
    outcome
}

/// Sends the run's events; a run that failed is an event too (a busy lock is not).
async fn notify_outcome(config: &Config, outcome: &Result<Report, Error>, now: i64) {
    let notifications: Vec<notify::Notification> = match outcome {
        Ok(report) => report
            .plan
            .pools
            .iter()
            .flat_map(|pool| {
                let events = pool
                    .scale
                    .iter()
                    .flat_map(|scale| scale.events.iter())
                    .map(|event| notify::from_event(&pool.name, event));
                let newly_bad: std::collections::BTreeSet<&String> =
                    pool.newly_bad.iter().collect();
                let skipped = pool
                    .skipped
                    .iter()
                    .filter(move |skipped| newly_bad.contains(&skipped.instance_id))
                    .map(|skipped| {
                        notify::skipped(&pool.name, &skipped.instance_id, &skipped.reason)
                    });
                events.chain(skipped).collect::<Vec<_>>()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // `failed` and `recovered` on transitions, not on every run of an outage; a busy lock is
    // neither (the run holding it decides).
    let mut notifications = notifications;
    let error = match outcome {
        Err(Error::State(state::StateError::Busy { .. })) => return,
        Err(error) => Some(error_chain(error)),
        Ok(_) => None,
    };
    // Without a sink for them there is nothing to remember: a failed run then leaves no file.
    let sink = config.notify.webhook.is_some() || config.notify.command.is_some();
    let subscribed = ["failed", "recovered"]
        .iter()
        .any(|event| config.notify.on.contains(*event));
    if !(sink && subscribed) {
        notify::send(&config.notify, &notifications).await;
        return;
    }
    let (transition, failing) = notify::failure_transition(
        notify::load_failing(&config.state_path),
        now,
        error.as_deref(),
        config.notify.repeat_failed_s,
    );
    notify::save_failing(&config.state_path, failing);
    notifications.extend(transition);
    notify::send(&config.notify, &notifications).await;
}

/// One reconcile with a given provider: the whole run after validation. `now` is Unix seconds.
pub async fn reconcile(
    config: &Config,
    renderer: &Renderer,
    provider: &impl Provider,
    plan_only: bool,
    now: i64,
) -> Result<Report, Error> {
    let _lock = if plan_only {
        None
    } else {
        Some(StateLock::acquire(&config.state_path)?)
    };
    let mut stage = Instant::now();
    let mut lap = |name: &str, detail: String| {
        tracing::info!("{name}: {:?}{detail}", stage.elapsed());
        stage = Instant::now();
    };
    let loaded = state::load(&config.state_path)?;
    if let Some(owner) = &loaded.state.config
        && *owner != config.identity
    {
        return Err(state::StateError::OtherConfig {
            path: config.state_path.clone(),
            owner: owner.clone(),
            ours: config.identity.clone(),
        }
        .into());
    }
    lap("load state", String::new());
    let observed = observe(config, provider, &loaded.state, now).await?;
    lap(
        "observe",
        format!(
            " ({} pool(s), {} instance(s))",
            observed.len(),
            observed
                .iter()
                .map(|pool| pool.instances.len())
                .sum::<usize>()
        ),
    );
    let installed = read_installed(&config.haproxy.config)?;
    let plan = plan::build(
        Facts {
            config,
            observed: &observed,
            installed: installed.as_deref(),
            state: &loaded.state,
            now,
        },
        renderer,
    )?;
    let changes = plan.has_changes();
    lap(
        "plan and render",
        format!(
            " ({} server(s), {} action(s))",
            plan.pools
                .iter()
                .map(|pool| pool.servers.len())
                .sum::<usize>(),
            plan.actions.len()
        ),
    );
    if plan_only {
        // Every check the run makes before acting, so that `--plan` fails where the run would.
        if plan.config.changed {
            install::check_without_installing(&config.haproxy, &plan.rendered).await?;
            lap("check the candidate", String::new());
        }
        return Ok(Report {
            mode: "plan",
            changes,
            plan,
        });
    }
    apply(config, &plan, &loaded, provider).await?;
    lap("apply", String::new());
    Ok(Report {
        mode: "apply",
        changes,
        plan,
    })
}

/// Everything the planner needs from the world: instances, and for scaling pools the stats,
/// readiness probes and launch look-ups. A failed listing or look-up fails the run (nothing
/// changes); unreadable stats only stop scaling (invariant 7).
async fn observe(
    config: &Config,
    provider: &impl Provider,
    state: &state::State,
    now: i64,
) -> Result<Vec<Observed>, Error> {
    let scaling = config.pools.iter().any(|pool| pool.scaling.is_some());
    let stats = match (&config.haproxy.stats, scaling) {
        (Some(source), true) => match runtime::read_stats(source, STATS_TIMEOUT).await {
            Ok((mut info, rows)) => {
                // The stats page has no pid: the master's reload count stands in for it, so a
                // reload made by anyone splits the samples too.
                if let (StatsSource::Url(_), Some(path)) =
                    (source, config.haproxy.reload.master_socket())
                    && let Ok(counters) = Master::new(path).counters().await
                {
                    info.pid = counters.reloads.saturating_add(1);
                }
                Some((info, rows))
            }
            Err(error) => {
                tracing::warn!("no scaling decision this run: {}", error_chain(&error));
                None
            }
        },
        _ => None,
    };
    // Old workers matter only to a drain that may end early: ask the master only then.
    let draining = state.pools.values().any(|pool| !pool.draining.is_empty());
    let old_workers = match (config.haproxy.reload.master_socket(), &stats) {
        (Some(path), Some(_)) if draining => match Master::new(path).old_workers().await {
            Ok(count) => OldWorkers::Running(count),
            Err(error) => {
                tracing::warn!(
                    "drains run their full drain_s this run: {}",
                    error_chain(&error)
                );
                OldWorkers::Unknown
            }
        },
        _ => OldWorkers::Untracked,
    };
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
        let mut pool_observed = Observed {
            pool: pool.name.clone(),
            ..Observed::default()
        };
        if let Some(scaling) = &pool.scaling {
            let pool_state = state.pools.get(&pool.name).cloned().unwrap_or_default();
            pool_observed.stats = stats.as_ref().map(|(info, rows)| StatsSnapshot {
                node: "local".to_owned(),
                info: *info,
                rows: rows
                    .iter()
                    .filter(|row| row.proxy == pool.backend)
                    .cloned()
                    .collect(),
                old_workers,
            });
            for intent in pool_state
                .launches
                .iter()
                .filter(|intent| intent.instance_ids.is_none())
            {
                // The listing already holds what was launched with the token and is running;
                // only EC2 is asked again (it also knows stopped and stopping instances). An
                // exec provider's look-up is its list command: once per run is enough.
                let listed: Vec<String> = instances
                    .iter()
                    .filter(|instance| {
                        instance.tags.get(crate::config::scaling::TAG_LAUNCH_TOKEN)
                            == Some(&intent.token)
                    })
                    .map(|instance| instance.id.clone())
                    .collect();
                let ids = if !listed.is_empty()
                    || !matches!(pool.provider, crate::config::ProviderKind::Ec2)
                {
                    listed
                } else {
                    provider.find_by_token(pool, &intent.token).await?
                };
                pool_observed
                    .found_by_token
                    .insert(intent.token.clone(), ids);
            }
            let by_id: std::collections::HashMap<&str, &crate::cloud::Instance> = instances
                .iter()
                .map(|instance| (instance.id.as_str(), instance))
                .collect();
            let mut targets = Vec::new();
            for id in lifecycle::probe_candidates(pool, scaling, &instances, &pool_state, now) {
                match by_id
                    .get(id.as_str())
                    .map(|instance| plan::server_address(pool, instance))
                {
                    Some(Ok((host, port))) => targets.push((id, host, port)),
                    // No usable address yet: not ready.
                    _ => {
                        pool_observed.ready.insert(id, false);
                    }
                }
            }
            pool_observed
                .ready
                .extend(probe::ready_all(&pool.ready_check, targets).await);
        }
        pool_observed.instances = instances;
        observed.push(pool_observed);
    }
    Ok(observed)
}

/// Prints a failed run's error once: `error: …` and each `caused by: …` on stderr, and with
/// `--format json` also a JSON document on stdout. A busy lock is a normal overlap of two runs,
/// not a failure: it is said only with `-v` (cron mails whatever a job prints).
pub fn print_error(cli: &Cli, error: &Error) {
    let busy = error.exit_code() == crate::error::EXIT_LOCKED;
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if cli.format == Format::Json {
        let document = serde_json::json!({
            "mode": if cli.plan { "plan" } else { "apply" },
            "changes": false,
            "error": {
                "message": error.to_string(),
                "causes": causes,
                "exit_code": error.exit_code(),
            },
        });
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut stdout, &document)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout));
    }
    if busy {
        // Not an error: another run is doing the job.
        if cli.verbose > 0 {
            say(format_args!("note: {error} (exit 75)"));
        }
        return;
    }
    say(format_args!("error: {error}"));
    for cause in &causes {
        say(format_args!("caused by: {cause}"));
    }
}

/// One line on stderr. A closed or broken stderr (a pipe nobody reads) loses the line, never
/// the run: `eprintln!` would panic, and the run would exit 101 after doing its work.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
                    say(format_args!("warning: {warning}"));
                }
                for (line, news) in report.plan.left_out() {
                    if news {
                        say(format_args!("warning: {line}"));
                    } else {
                        tracing::info!("{line}");
                    }
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
            port: None,
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
        run(&config, &renderer, &cloud, 1_000).await.unwrap();
        let before = files(dir.path());

        cloud.set("web", vec![instance("i-1"), instance("i-3")]);
        cloud.fail("api", "list the instances");
        let error = run(&config, &renderer, &cloud, 1_000).await.unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().contains("pool `api`: ")
                && error.to_string().contains("the next run tries again"),
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
        let report = reconcile(&config, &renderer, &cloud, true, 1_000)
            .await
            .unwrap();
        assert!(report.changes);
        assert_eq!(report.plan.actions.len(), 4, "{}", report.plan);
        assert_eq!(files(dir.path()), before);
    }

    /// A stand-in for HAProxy's admin socket: answers `show info` and `show stat` with canned
    /// text and records every command.
    struct FakeHaproxy {
        commands: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        stat: std::sync::Arc<std::sync::Mutex<String>>,
    }

    impl FakeHaproxy {
        fn start(dir: &Path) -> FakeHaproxy {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let socket = dir.join("admin.sock");
            let listener = tokio::net::UnixListener::bind(&socket).unwrap();
            let commands = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let stat = std::sync::Arc::new(std::sync::Mutex::new(String::from(
                "# pxname,svname,status,scur,stot,\n",
            )));
            let (seen, answer) = (commands.clone(), stat.clone());
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut command = String::new();
                    let _ = stream.read_to_string(&mut command).await;
                    let command = command.trim().to_owned();
                    let reply = match command.as_str() {
                        "show info" => "Pid: 42\nUptime_sec: 100\n".to_owned(),
                        "show stat" => answer.lock().unwrap().clone(),
                        _ => "\n".to_owned(),
                    };
                    seen.lock().unwrap().push(command);
                    let _ = stream.write_all(reply.as_bytes()).await;
                }
            });
            FakeHaproxy { commands, stat }
        }

        fn set_servers(&self, servers: &[(&str, u64, u64)]) {
            let mut text = String::from("# pxname,svname,status,scur,stot,\n");
            for (name, scur, stot) in servers {
                text.push_str(&format!("web,{name},UP,{scur},{stot},\n"));
            }
            *self.stat.lock().unwrap() = text;
        }
    }

    fn scaling_setup(dir: &Path, scaling: &str) -> (Config, Renderer) {
        let text = format!(
            "[state]\npath = \"{0}/state.json\"\n[haproxy]\nconfig = \"{0}/haproxy.cfg\"\nstats_socket = \"{0}/admin.sock\"\ncheck_command = [\"test\", \"-s\", \"{{config}}\"]\nreload_command = [\"true\"]\n\
[[pool]]\nname = \"web\"\nport = 80\nready_check = \"none\"\n[pool.discover]\nsecurity_group = \"web\"\n[pool.launch]\nimage_id = \"ami-1\"\ninstance_type = \"t3.micro\"\n\
[pool.scaling]\nmax = 6\nwarmup_s = 0\ncooldown_s = 0\ndrain_s = 60\nscale_up_above = 20\nscale_down_below = 5\n{1}\n",
            dir.display(),
            scaling
        );
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        let renderer = Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}} server {{name}} {{address}}:{{port}}{{#if booting}} disabled{{/if}}{{#if draining}} weight 0{{/if}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        (config, renderer)
    }

    /// A reconcile that waits out a busy lock. Other tests of this multi-threaded harness fork
    /// children, and a child holds a copy of every descriptor (our lock's too) until it execs,
    /// so a lock released a moment ago can still look held. The binary takes its lock once.
    async fn run(
        config: &Config,
        renderer: &Renderer,
        cloud: &FakeCloud,
        now: i64,
    ) -> Result<Report, Error> {
        for _ in 0..100 {
            match reconcile(config, renderer, cloud, false, now).await {
                Err(Error::State(crate::state::StateError::Busy { .. })) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                outcome => return outcome,
            }
        }
        panic!("the state lock stayed busy");
    }

    fn launch_calls(cloud: &FakeCloud) -> Vec<String> {
        cloud
            .calls()
            .into_iter()
            .filter(|call| call.starts_with("launch"))
            .collect()
    }

    #[tokio::test]
    async fn a_launch_that_fails_after_its_intent_is_saved_is_retried_once_with_the_same_token() {
        let dir = tempfile::tempdir().unwrap();
        let (config, renderer) = scaling_setup(dir.path(), "min = 2\nstep_up = 2");
        let _haproxy = FakeHaproxy::start(dir.path());
        let cloud = FakeCloud::default();
        cloud.fail("web", "launch instances");
        let error = run(&config, &renderer, &cloud, 1_000).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot launch instances of pool `web`"),
            "{error}"
        );
        let saved = state::load(&config.state_path).unwrap().state;
        let intent = &saved.pools["web"].launches[0];
        assert_eq!((intent.count, intent.instance_ids.clone()), (2, None));

        cloud.heal();
        let report = run(&config, &renderer, &cloud, 1_060).await.unwrap();
        assert_eq!(
            launch_calls(&cloud),
            [format!("launch web 2 {}", intent.token)]
        );
        assert_eq!(cloud.instances("web").len(), 2);
        assert!(
            report
                .plan
                .actions
                .iter()
                .any(|a| matches!(a, crate::plan::Action::Launch { retry: true, .. }))
        );

        // Converged: the next runs launch nothing more.
        for now in [1_120, 1_180] {
            let report = run(&config, &renderer, &cloud, now).await.unwrap();
            assert!(launch_calls(&cloud).len() == 1, "{}", report.plan);
        }
    }

    #[tokio::test]
    async fn without_stats_membership_syncs_but_nothing_scales() {
        let dir = tempfile::tempdir().unwrap();
        let (config, renderer) = scaling_setup(dir.path(), "min = 1");
        let cloud = FakeCloud::default();
        let mut a = instance("i-1");
        a.tags
            .insert(crate::config::scaling::TAG_POOL.into(), "web".into());
        let mut b = a.clone();
        b.id = "i-2".into();
        cloud.set("web", vec![a, b]);
        // No admin socket at all: stats are missing.
        let report = run(&config, &renderer, &cloud, 1_000).await.unwrap();
        let scale = report.plan.pools[0].scale.as_ref().unwrap();
        assert_eq!((scale.decision.metric, scale.decision.desired), (None, 2));
        assert!(cloud.calls().is_empty());
        let installed = std::fs::read_to_string(&config.haproxy.config).unwrap();
        assert!(
            installed.contains("server i-1") && installed.contains("server i-2"),
            "{installed}"
        );
    }

    #[tokio::test]
    async fn scale_down_drains_then_terminates_and_a_failed_terminate_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (config, renderer) = scaling_setup(dir.path(), "min = 1");
        let haproxy = FakeHaproxy::start(dir.path());
        let cloud = FakeCloud::default();
        let tagged = |id: &str| {
            let mut i = instance(id);
            i.tags
                .insert(crate::config::scaling::TAG_POOL.into(), "web".into());
            i
        };
        cloud.set("web", vec![tagged("i-1"), tagged("i-2")]);
        haproxy.set_servers(&[("i-1", 1, 100), ("i-2", 0, 100)]);
        run(&config, &renderer, &cloud, 1_000).await.unwrap();
        // That run installed the first config and reloaded: the interval after it tells nothing.
        haproxy.set_servers(&[("i-1", 1, 105), ("i-2", 0, 105)]);
        let report = run(&config, &renderer, &cloud, 1_030).await.unwrap();
        assert_eq!(
            report.plan.pools[0].scale.as_ref().unwrap().decision.metric,
            None
        );
        // A minute later, almost no new sessions: drain one (the idle i-2).
        haproxy.set_servers(&[("i-1", 1, 110), ("i-2", 0, 110)]);
        let report = run(&config, &renderer, &cloud, 1_060).await.unwrap();
        let text = report.plan.to_string();
        assert!(text.contains("drain server web/i-2"), "{text}");
        assert!(
            haproxy
                .commands
                .lock()
                .unwrap()
                .contains(&"set server web/i-2 state drain".to_owned())
        );
        assert!(
            std::fs::read_to_string(&config.haproxy.config)
                .unwrap()
                .contains("server i-2 10.0.0.1:80 weight 0")
        );

        // Drained (no session left): terminate, but the cloud refuses; the run fails.
        cloud.fail("web", "terminate instances");
        let error = run(&config, &renderer, &cloud, 1_120).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot terminate instances of pool `web`"),
            "{error}"
        );
        assert_eq!(cloud.instances("web").len(), 2);
        cloud.heal();
        let report = run(&config, &renderer, &cloud, 1_180).await.unwrap();
        assert_eq!(cloud.calls(), ["terminate web i-2"]);
        // Issue 9, item 14: the plan lists its actions in the order the run makes them: the
        // server leaves the config and HAProxy is reloaded before its instance is terminated.
        let kinds: Vec<&str> = report
            .plan
            .actions
            .iter()
            .map(|action| match action {
                crate::plan::Action::RemoveServer { .. } => "remove",
                crate::plan::Action::InstallConfig { .. } => "install",
                crate::plan::Action::Reload { .. } => "reload",
                crate::plan::Action::Terminate { .. } => "terminate",
                _ => "other",
            })
            .collect();
        // (The failed run before installed a file without i-2, but recorded nothing: as far as
        // the state knows, i-2 is still in the backend, and HAProxy's load of that file was never
        // confirmed, so this run says it all again.)
        assert_eq!(kinds, ["remove", "install", "reload", "terminate"]);
        let ids: Vec<String> = cloud.instances("web").into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["i-1"]);
        let installed = std::fs::read_to_string(&config.haproxy.config).unwrap();
        assert!(!installed.contains("i-2"), "{installed}");
    }
}
