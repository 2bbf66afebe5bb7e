//! A run, the tool's main job: the only place that strings the steps of a run together.
//!
//! validate config and template → lock → load state (store) → observe (cloud, stats, probes) →
//! read the installed haproxy.cfg → decide (pure) → `--plan`: report it / otherwise: apply it →
//! report. See `ARCHITECTURE.md`. `--plan` takes no lock and
//! writes nothing: every file it reads is replaced only by atomic renames, so it always sees
//! whole files. `check` and `status` use its parts (connecting, the store, a plan).

use std::time::Instant;

use aws_config::SdkConfig;

use crate::apply::{Edges, apply};
use crate::cli::Cli;
use crate::cloud::ec2::Ec2;
use crate::cloud::{Clouds, Provider};
use crate::config::{Config, EventKind, ProviderKind};
use crate::decide::plan::{self, Facts};
use crate::decide::render::Renderer;
use crate::error::Error;
use crate::error_chain::error_chain;
use crate::haproxy::install::{self, read_installed};
use crate::notify;
use crate::observe::{self, observe};
use crate::report::{Mode, Report};
use crate::store::s3::S3Store;
use crate::store::shared::SharedStore;
use crate::store::{self, FileStore, Revision, StateLock, StateStore, Store};

/// Unix seconds now (0 before 1970: a clock that far off is not worth an error).
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// The clouds the config's pools use: EC2 is connected only when some pool lists from it, so
/// exec- and static-only configs need no AWS setup.
pub(crate) async fn connect(config: &Config) -> Result<(Clouds, Store), Error> {
    let uses_ec2 = config
        .pools
        .iter()
        .any(|pool| pool.provider == ProviderKind::Ec2);
    let sdk = if uses_ec2 || config.shared_state.is_some() {
        let started = Instant::now();
        let sdk = crate::cloud::aws::sdk_config(&config.aws).await?;
        tracing::info!("AWS client: {:?}", started.elapsed());
        Some(sdk)
    } else {
        None
    };
    let clouds = Clouds {
        ec2: sdk.as_ref().filter(|_| uses_ec2).map(Ec2::new),
    };
    Ok((clouds, open_store(config, sdk.as_ref()).await?))
}

/// The state store the config names. An AWS configuration is resolved (when `sdk` is not given)
/// only for a shared state: a local one needs no cloud.
pub(crate) async fn open_store(config: &Config, sdk: Option<&SdkConfig>) -> Result<Store, Error> {
    let local = FileStore::new(&config.state_path);
    let Some(location) = &config.shared_state else {
        return Ok(Store::File(local));
    };
    let resolved;
    let sdk = if let Some(sdk) = sdk {
        sdk
    } else {
        resolved = crate::cloud::aws::sdk_config(&config.aws).await?;
        &resolved
    };
    S3Store::check_credentials(sdk, location).await?;
    let shared = S3Store::new(sdk, location, config.aws.endpoint_url.is_some());
    Ok(Store::Shared(SharedStore::new(
        shared,
        local,
        config.identity.clone(),
    )))
}

/// How many times a run decides when other nodes keep changing the shared state first.
pub(crate) const RACE_ATTEMPTS: u32 = 3;

/// Validates everything, then reconciles once (or plans, with `--plan`).
pub(crate) async fn run(cli: &Cli) -> Result<Report, Error> {
    let config = Config::from_cli(cli)?;
    if !config.enabled {
        if !cli.plan {
            return Err(Error::Disabled {
                config: config.source.to_string(),
            });
        }
        tracing::warn!(
            "{} says `enabled = false`: a run would do nothing until it says `enabled = true`; what it would then do:",
            config.source
        );
    }
    let started = Instant::now();
    let now = unix_now() as i64;
    let saved = match &cli.command {
        Some(crate::cli::Command::Apply { file }) => {
            Some((file.as_path(), crate::saved_plan::load(file, &config, now)?))
        }
        _ => None,
    };
    let saved = saved.as_ref().map(|(path, plan)| (*path, plan));
    let out = cli.out.as_deref();
    let outcome = async {
        let renderer =
            crate::haproxy::template::load(&config.haproxy.template).map_err(|error| {
                Error::Template {
                    config: config.source.to_string(),
                    error,
                }
            })?;
        let (provider, store) = connect(&config).await?;
        let run = (&config, &renderer, &provider);
        let how = How {
            plan_only: cli.plan,
            out,
            saved,
        };
        store::with_store!(&store, store => until_won(run, store, how, now).await)
    }
    .await;
    if !cli.plan {
        // A template or cloud client that cannot be used is a failed run too.
        write_metrics(&config, &outcome, started);
        if !matches!(outcome, Err(Error::Template { .. } | Error::Region(_))) {
            notify_outcome(&config, &outcome, now).await;
        }
    }
    outcome
}

/// Reconciles; a lost race on the shared state voids what the run decided: it decides again from
/// what the winner committed, a few times, then leaves it to the next run.
async fn until_won(
    (config, renderer, provider): (&Config, &Renderer, &impl Provider),
    store: &impl StateStore,
    how: How<'_>,
    now: i64,
) -> Result<Report, Error> {
    let mut attempt = 1;
    loop {
        let run = Run {
            how,
            now,
            lost_races: attempt - 1,
        };
        match reconcile_run(config, renderer, provider, store, run).await {
            // A saved plan is not decided again: the state it was made from is gone.
            Err(Error::State(store::StateError::Raced { .. }))
                if let Some((path, _)) = how.saved =>
            {
                return Err(crate::saved_plan::StalePlan::Changed {
                    path: path.to_owned(),
                    why: "another node of the shared state committed first".to_owned(),
                }
                .into());
            }
            Err(error @ Error::State(store::StateError::Raced { .. }))
                if attempt < RACE_ATTEMPTS =>
            {
                tracing::info!("{error}: deciding again ({attempt} of {RACE_ATTEMPTS})");
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Writes `metrics_file`, if set, for a run that ran (a busy lock is not a run).
fn write_metrics(config: &Config, outcome: &Result<Report, Error>, started: Instant) {
    let Some(path) = &config.metrics_file else {
        return;
    };
    if matches!(outcome, Err(error) if error.is_someone_elses_turn()) {
        return;
    }
    let figures = crate::metrics::RunFigures::of(
        outcome.as_ref().ok(),
        config,
        started.elapsed().as_secs_f64(),
        unix_now(),
    );
    crate::metrics::write(path, &figures);
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
        Err(error) if error.is_someone_elses_turn() => return,
        Err(error) => Some(error_chain(error)),
        Ok(_) => None,
    };
    // Without a sink for them there is nothing to remember: a failed run then leaves no file.
    let sink = config.notify.webhook.is_some() || config.notify.command.is_some();
    let subscribed = [EventKind::Failed, EventKind::Recovered]
        .iter()
        .any(|event| config.notify.on.contains(event));
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
pub(crate) async fn reconcile(
    config: &Config,
    renderer: &Renderer,
    provider: &impl Provider,
    store: &impl StateStore,
    plan_only: bool,
    now: i64,
) -> Result<Report, Error> {
    let run = Run {
        how: How {
            plan_only,
            out: None,
            saved: None,
        },
        now,
        lost_races: 0,
    };
    reconcile_run(config, renderer, provider, store, run).await
}

/// What kind of run: a plan (saved to `out`), a run, or a saved plan carried out.
#[derive(Debug, Clone, Copy)]
struct How<'a> {
    plan_only: bool,
    out: Option<&'a std::path::Path>,
    saved: Option<(&'a std::path::Path, &'a crate::saved_plan::SavedPlan)>,
}

/// What one attempt of a run is.
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    how: How<'a>,
    /// Unix seconds.
    now: i64,
    /// How many of this run's earlier attempts lost the race to commit their decision.
    lost_races: u32,
}

async fn reconcile_run(
    config: &Config,
    renderer: &Renderer,
    provider: &impl Provider,
    store: &impl StateStore,
    Run {
        how,
        now,
        lost_races,
    }: Run<'_>,
) -> Result<Report, Error> {
    let plan_only = how.plan_only;
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
    let (loaded, revision) = store.load().await?;
    if let Some(owner) = &loaded.config
        && *owner != config.identity
    {
        return Err(store::StateError::OtherConfig {
            path: config.state_name(),
            owner: owner.clone(),
            ours: config.identity.clone(),
        }
        .into());
    }
    // With a shared state, the fleet's decisions go by the store's clock, and a node whose
    // own clock is off does not decide at all (invariant: no decision twice).
    let (now, clock_off_s) = match store.clock() {
        Some(store_now) => {
            let off = now - store_now;
            if off.abs() > plan::MAX_CLOCK_OFF_S {
                tracing::warn!(
                    "this node's clock is {off} s off the shared state's store: it renders haproxy.cfg but takes no scaling decision; fix its clock (NTP)"
                );
                (store_now, Some(off))
            } else {
                (store_now, None)
            }
        }
        None => (now, None),
    };
    lap("load state", String::new());
    if let Some((path, saved)) = how.saved {
        return apply_saved(
            config,
            renderer,
            provider,
            store,
            (path, saved),
            (loaded, revision),
        )
        .await;
    }
    let observed = observe(config, provider, &loaded, now).await?;
    lap(
        "observe",
        format!(
            " ({} pool(s), {} instance(s))",
            config.pools.len(),
            observed
                .iter()
                .map(|(_, observed)| observed.instances.len())
                .sum::<usize>()
        ),
    );
    let installed = read_installed(&config.haproxy.config)?;
    let haproxy_version = observe::haproxy_version(config, &observed).await;
    // Each decision's launch tokens are its own (issue 28): the node, the state's generation
    // and 128 random bits, so two decisions of one second never share a token.
    let token_salt = format!(
        "{}:{}:{}",
        config.node,
        revision.state_generation(),
        store::random_hex()
    );
    let facts = Facts {
        config,
        observed: &observed,
        installed: installed.as_deref(),
        state: &loaded,
        now,
        clock_off_s,
        haproxy_version,
        token_salt: &token_salt,
    };
    let mut plan = plan::build(facts, renderer)?;
    // An external metric that gave no value holds its pool every run until it does: said on
    // each run (a run prints no decisions), and in `--plan`'s decision line.
    if !plan_only {
        for pool in &plan.pools {
            if let Some(why) = pool
                .scale
                .as_ref()
                .and_then(|scale| scale.no_metric.as_ref())
            {
                tracing::warn!("pool `{}`: no metric this run, holding: {why}", pool.name);
            }
        }
    }
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
        if plan.config.changed() {
            install::check_without_installing(&config.haproxy, &plan.rendered).await?;
            lap("check the candidate", String::new());
        }
        if let Some(out) = how.out {
            crate::saved_plan::save(out, &facts, &plan).map_err(|error| Error::SavePlan {
                path: out.to_owned(),
                error,
            })?;
        }
        return Ok(Report {
            mode: Mode::Plan,
            changes,
            plan,
            conflicts: 0,
        });
    }
    if lost_races > 0 {
        // Said in the fleet's state, for `status`: this node's decisions keep losing races.
        plan.next_state
            .nodes
            .entry(config.node.clone())
            .or_default()
            .last_conflict_at = Some(now);
    }
    let edges = Edges { config, provider };
    let carried = apply(&config.node, &mut plan, (&loaded, revision), store, &edges).await?;
    lap("apply", String::new());
    Ok(Report {
        mode: Mode::Apply,
        changes,
        plan,
        conflicts: lost_races + carried,
    })
}

/// `apply FILE`: the saved plan, decided again from its own observations, carried out when the
/// world still matches it (the state and haproxy.cfg unchanged, every pool's instances listed
/// as they were, the same plan rebuilt); refused before anything changes otherwise.
async fn apply_saved<S: StateStore>(
    config: &Config,
    renderer: &Renderer,
    provider: &impl Provider,
    store: &S,
    (path, saved): (&std::path::Path, &crate::saved_plan::SavedPlan),
    (loaded, revision): (crate::model::State, S::Revision),
) -> Result<Report, Error> {
    let installed = read_installed(&config.haproxy.config)?;
    saved.check_files(path, &loaded, installed.as_deref())?;
    let observed = saved.observations(config, path)?;
    for (pool, then) in observed.iter() {
        let listed = observe::with_endpoints(pool, provider.list(pool).await?);
        crate::saved_plan::check_instances(path, &pool.name, &then.instances, &listed)?;
    }
    let facts = saved.facts(config, &observed, &loaded, installed.as_deref());
    let mut plan = plan::build(facts, renderer)?;
    if crate::saved_plan::digest(&plan) != saved.plan_sha256 {
        return Err(crate::saved_plan::StalePlan::Changed {
            path: path.to_owned(),
            why:
                "the config or the template changed since: the same observations make another plan"
                    .to_owned(),
        }
        .into());
    }
    let changes = plan.has_changes();
    let edges = Edges { config, provider };
    let carried = apply(&config.node, &mut plan, (&loaded, revision), store, &edges).await?;
    Ok(Report {
        mode: Mode::Apply,
        changes,
        plan,
        conflicts: carried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Operation;
    use crate::cloud::fake::FakeCloud;
    use crate::model::Instance;
    use crate::testing::{self, ConfigBuilder, FakeAdminSocket};
    use std::path::Path;

    fn setup(dir: &Path) -> (Config, Renderer) {
        let config = ConfigBuilder::in_dir(dir)
            .pool("web", 80, "")
            .pool("api", 81, "")
            .build();
        let renderer = Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}} server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        (config, renderer)
    }

    fn instance(id: &str) -> Instance {
        testing::instance(id, "10.0.0.1")
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
        cloud.fail("api", Operation::List);
        let error = run(&config, &renderer, &cloud, 1_000).await.unwrap_err();
        assert_eq!(error.exit_code(), 1);
        assert!(
            error.to_string().contains("pool `api` ")
                && error.to_string().contains("the next run tries again"),
            "{error}"
        );
        assert_eq!(files(dir.path()), before);
    }

    #[tokio::test]
    async fn a_pool_removed_from_the_config_leaves_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let (config, renderer) = setup(dir.path());
        let cloud = FakeCloud::default();
        cloud.set("web", vec![instance("i-1")]);
        cloud.set("api", vec![instance("i-2")]);
        run(&config, &renderer, &cloud, 1_000).await.unwrap();
        let one = ConfigBuilder::in_dir(dir.path())
            .pool("web", 80, "")
            .build();
        run(&one, &renderer, &cloud, 1_060).await.unwrap();
        let saved = store::load(&one.state_path).unwrap().0;
        assert_eq!(saved.pools.keys().collect::<Vec<_>>(), ["web"]);
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
        let report = reconcile(
            &config,
            &renderer,
            &cloud,
            &FileStore::new(&config.state_path),
            true,
            1_000,
        )
        .await
        .unwrap();
        assert!(report.changes);
        assert_eq!(report.plan.actions.len(), 4, "{}", report.plan);
        assert_eq!(files(dir.path()), before);
    }

    fn scaling_setup(dir: &Path, scaling: &str) -> (Config, Renderer) {
        let config = ConfigBuilder::in_dir(dir)
            .section(&format!("stats_socket = \"{}/admin.sock\"", dir.display()))
            .scaling_pool(
                "web",
                80,
                "ready_check = \"none\"",
                &format!("max = 6\nwarmup_s = 0\ncooldown_s = 0\ndrain_s = 60\nscale_up_above = 20\nscale_down_below = 5\n{scaling}"),
            )
            .build();
        let renderer = Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}} server {{name}} {{address}}:{{port}}{{#if booting}} disabled{{/if}}{{#if draining}} weight 0{{/if}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap();
        (config, renderer)
    }

    fn start_haproxy(dir: &Path) -> FakeAdminSocket {
        FakeAdminSocket::start(&dir.join("admin.sock"))
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
            let store = FileStore::new(&config.state_path);
            match reconcile(config, renderer, cloud, &store, false, now).await {
                Err(Error::State(crate::store::StateError::Busy { .. })) => {
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
        let _haproxy = start_haproxy(dir.path());
        let cloud = FakeCloud::default();
        cloud.fail("web", Operation::Launch);
        let error = run(&config, &renderer, &cloud, 1_000).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot launch instances of pool `web`"),
            "{error}"
        );
        let saved = store::load(&config.state_path).unwrap().0;
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
                .any(|a| matches!(a, crate::decide::plan::Action::Launch { retry: true, .. }))
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
        let haproxy = start_haproxy(dir.path());
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
                .commands()
                .contains(&"set server web/i-2 state drain".to_owned())
        );
        assert!(
            std::fs::read_to_string(&config.haproxy.config)
                .unwrap()
                .contains("server i-2 10.0.0.1:80 weight 0")
        );

        // Drained (no session left): terminate, but the cloud refuses; the run fails.
        cloud.fail("web", Operation::Terminate);
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
                crate::decide::plan::Action::RemoveServer { .. } => "remove",
                crate::decide::plan::Action::InstallConfig { .. } => "install",
                crate::decide::plan::Action::Reload { .. } => "reload",
                crate::decide::plan::Action::Terminate { .. } => "terminate",
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
