//! The shared-state protocol, checked against every interleaving of several nodes' runs
//! (issue 28): each node runs the real decision ([`plan::build`]) and the real [`apply`] against
//! an in-memory store with compare-and-swap (the shared state's semantics: this node's own half
//! saved first, the fleet's half only if it changed) and an in-memory cloud that launches again
//! on every call (no token idempotency to hide a double launch). A deterministic scheduler
//! stops each node at every step another node can observe (a state load or save, a listing, a
//! launch) and explores every order of those steps, depth first, with a crash (the run dropped
//! where it stands) at any of them.
//!
//! After every execution:
//! - launches = decisions: each token that reached the cloud reached it once, and belongs to a
//!   scale-up in the shared scale history; each such decision's token reached the cloud, or its
//!   intent is still in the state (its node crashed before the call);
//! - every launch is recorded: in the history, in the intent's instance ids (or found by its
//!   tag), and in the report of the run that made it when that run ended well;
//! - no decision is more than `step_up`, the pool never passes `max`;
//! - no two decisions within `cooldown_s`;
//! - no node installs a haproxy.cfg it already runs (nothing makes a node reload for another
//!   node's commit or a lost race).

#![cfg(test)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::{Effects, apply};
use crate::config::Config;
use crate::config::scaling::{TAG_LAUNCH_TOKEN, TAG_POOL};
use crate::decide::plan::{self, Action, Facts, Observations, Plan};
use crate::decide::render::Renderer;
use crate::haproxy::install::Applied;
use crate::model::{Info, Instance, Observed, OldWorkers, Reading, State, StatsSnapshot};
use crate::reconcile::RACE_ATTEMPTS;
use crate::store::shared::with_own_facts;
use crate::store::{Revision, StateError, StateStore};
use crate::testing::{self, ConfigBuilder};

/// A step another node can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Load,
    List,
    Save,
    Launch,
}

/// A scenario: how many nodes, how many runs each, the pool's scaling, what may go wrong.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    nodes: usize,
    /// Runs per node (the first `nodes` entries count).
    runs: [usize; 3],
    /// Seconds between a node's runs (0: every run in the same second).
    interval_s: i64,
    cooldown_s: u64,
    step_up: u32,
    max: u32,
    /// Crashes allowed per execution.
    crashes: u32,
    /// Whether the listing is a step of its own (otherwise it is made with the load).
    split_listing: bool,
}

const START: i64 = 1_800_000_000;

/// The fleet's state, every node's own half, the cloud, and the scheduler's view.
#[derive(Debug, Default)]
struct World {
    /// The fleet's half as each generation left it (the last is the current one).
    generations: Vec<State>,
    /// Each node's own file.
    local: Vec<State>,
    /// Each node's installed haproxy.cfg.
    installed: Vec<Option<String>>,
    /// Instances: (id, token).
    instances: Vec<(String, String)>,
    /// Launch calls: (node, run, token, count).
    calls: Vec<(usize, usize, String, u32)>,
    /// Nodes that installed a haproxy.cfg they already ran.
    needless_installs: Vec<usize>,
    /// Runs started, in order (their clock goes by it).
    started: usize,
    /// Per node: the step it waits at, and whether it may take it.
    waiting: Vec<Option<Step>>,
    granted: Vec<bool>,
}

impl World {
    fn fleet(state: &State) -> State {
        with_own_facts(state, &State::default())
    }
}

type Shared = Rc<RefCell<World>>;

/// Resolves once the scheduler lets `node` take `step`.
struct Gate {
    world: Shared,
    node: usize,
    step: Step,
}

impl Future for Gate {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let mut world = self.world.borrow_mut();
        if world.granted[self.node] {
            world.granted[self.node] = false;
            world.waiting[self.node] = None;
            Poll::Ready(())
        } else {
            world.waiting[self.node] = Some(self.step);
            Poll::Pending
        }
    }
}

fn gate(world: &Shared, node: usize, step: Step) -> Gate {
    Gate {
        world: world.clone(),
        node,
        step,
    }
}

/// One node's view of the in-memory store.
struct Store {
    world: Shared,
    node: usize,
}

/// The model's revision: the fleet state's generation.
#[derive(Debug, Clone, Copy)]
struct Generation(u64);

impl Revision for Generation {
    fn is_none(&self) -> bool {
        false
    }

    fn state_generation(&self) -> u64 {
        self.0
    }
}

impl StateStore for Store {
    type Revision = Generation;

    async fn load(&self) -> Result<(State, Generation), StateError> {
        gate(&self.world, self.node, Step::Load).await;
        let world = self.world.borrow();
        let generation = world.generations.len() as u64 - 1;
        let shared = &world.generations[generation as usize];
        let state = with_own_facts(shared, &world.local[self.node]);
        Ok((state, Generation(generation)))
    }

    async fn save(&self, state: &State, expected: &Generation) -> Result<Generation, StateError> {
        let Generation(expected) = *expected;
        let unchanged = {
            let mut world = self.world.borrow_mut();
            // This node's half first, whatever happens to the fleet's (as the shared store).
            world.local[self.node] = state.clone();
            World::fleet(state) == world.generations[expected as usize]
        };
        if unchanged {
            return Ok(Generation(expected));
        }
        gate(&self.world, self.node, Step::Save).await;
        let mut world = self.world.borrow_mut();
        if world.generations.len() as u64 - 1 != expected {
            return Err(StateError::Raced {
                location: "model".into(),
            });
        }
        world.generations.push(World::fleet(state));
        Ok(Generation(expected + 1))
    }
}

/// One node's effects: the in-memory cloud and its own haproxy.cfg.
struct NodeEffects {
    world: Shared,
    node: usize,
    run: usize,
}

impl Effects for NodeEffects {
    async fn launch(
        &self,
        _pool: &str,
        count: u32,
        token: &str,
    ) -> Result<Vec<String>, super::ApplyError> {
        gate(&self.world, self.node, Step::Launch).await;
        let mut world = self.world.borrow_mut();
        world
            .calls
            .push((self.node, self.run, token.to_owned(), count));
        let first = world.instances.len();
        let ids: Vec<String> = (first..first + count as usize)
            .map(|n| format!("i-{n}"))
            .collect();
        for id in &ids {
            world.instances.push((id.clone(), token.to_owned()));
        }
        Ok(ids)
    }

    async fn drain(&self, _backend: &str, _server: &str) {}

    async fn install(&self, plan: &Plan) -> Result<Applied, super::ApplyError> {
        let mut world = self.world.borrow_mut();
        if world.installed[self.node].as_deref() == Some(plan.rendered.as_str()) {
            world.needless_installs.push(self.node);
        }
        world.installed[self.node] = Some(plan.rendered.clone());
        Ok(Applied::Runtime)
    }

    async fn terminate(&self, _pool: &str, ids: &[String]) -> Result<(), super::ApplyError> {
        let mut world = self.world.borrow_mut();
        world.instances.retain(|(id, _)| !ids.contains(id));
        Ok(())
    }
}

/// How a run ended: the tokens its report says it launched, or how it failed.
#[derive(Debug)]
enum RunEnd {
    Reported(Vec<String>),
    Failed(String),
}

/// The pool's instances as the cloud lists them (tagged for the pool, each with its token).
fn listing(world: &World) -> Vec<Instance> {
    let first = testing::tagged(
        testing::instance("i-first", "10.0.0.1"),
        &[(TAG_POOL, "web")],
    );
    std::iter::once(first)
        .chain(world.instances.iter().map(|(id, token)| {
            testing::tagged(
                testing::instance(id, "10.0.0.2"),
                &[(TAG_POOL, "web"), (TAG_LAUNCH_TOKEN, token)],
            )
        }))
        .collect()
}

/// One run of `node`: load, list, decide, apply; deciding again after a lost race, as
/// [`crate::reconcile::run`] does.
async fn run(
    world: Shared,
    config: Rc<Config>,
    renderer: Rc<Renderer>,
    (node, number, scenario): (usize, usize, Scenario),
) -> RunEnd {
    let store = Store {
        world: world.clone(),
        node,
    };
    let effects = NodeEffects {
        world: world.clone(),
        node,
        run: number,
    };
    for attempt in 1..=RACE_ATTEMPTS {
        let (loaded, revision) = match store.load().await {
            Ok(loaded) => loaded,
            Err(error) => return RunEnd::Failed(error.to_string()),
        };
        if attempt == 1 {
            world.borrow_mut().started += 1;
        }
        let now = START
            + scenario.interval_s * ((world.borrow().started as i64 - 1) / scenario.nodes as i64);
        if scenario.split_listing {
            gate(&world, node, Step::List).await;
        }
        let (instances, installed) = {
            let world = world.borrow();
            (listing(&world), world.installed[node].clone())
        };
        let observed = Observations::from_fn(&config.pools, |pool| {
            let mut found_by_token: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for instance in &instances {
                if let Some(token) = instance.tags.get(TAG_LAUNCH_TOKEN) {
                    found_by_token
                        .entry(token.clone())
                        .or_default()
                        .push(instance.id.clone());
                }
            }
            Observed {
                instances: testing::discovered(pool, &instances),
                stats: Some(StatsSnapshot {
                    node: config.node.clone(),
                    info: Info {
                        pid: 1,
                        uptime_s: 1_000,
                        version: None,
                    },
                    rows: Vec::new(),
                    old_workers: OldWorkers::Untracked,
                }),
                found_by_token,
                external: Some(Reading::Value {
                    text: "1000".into(),
                    at: None,
                }),
                ..Observed::default()
            }
        });
        let salt = format!("{node}:{}:{attempt}", revision.state_generation());
        let built = plan::build(
            Facts {
                config: &config,
                observed: &observed,
                installed: installed.as_deref(),
                state: &loaded,
                now,
                clock_off_s: None,
                haproxy_version: None,
                token_salt: &salt,
            },
            &renderer,
        );
        let mut plan = match built {
            Ok(plan) => plan,
            Err(error) => return RunEnd::Failed(error.to_string()),
        };
        match apply(
            &config.node,
            &mut plan,
            (&loaded, revision),
            &store,
            &effects,
        )
        .await
        {
            Ok(_) => {
                let tokens = plan
                    .actions
                    .iter()
                    .filter_map(|action| match action {
                        Action::Launch { token, .. } => Some(token.clone()),
                        _ => None,
                    })
                    .collect();
                return RunEnd::Reported(tokens);
            }
            Err(super::ApplyError::State(StateError::Raced { .. })) => {}
            Err(error) => return RunEnd::Failed(error.to_string()),
        }
    }
    RunEnd::Failed("raced".into())
}

type Task = Pin<Box<dyn Future<Output = RunEnd>>>;

/// What the scheduler may do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Step(usize),
    Crash(usize),
}

/// One execution, following `prefix` and then the first choice at each point; returns the
/// number of choices at each point it passed, and what it saw.
struct Execution {
    options: Vec<usize>,
    taken: Vec<usize>,
    world: World,
    ends: Vec<(usize, usize, Option<RunEnd>)>,
    steps: usize,
}

fn poll(task: &mut Task) -> Poll<RunEnd> {
    task.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn execute(
    scenario: Scenario,
    configs: &[Rc<Config>],
    renderer: &Rc<Renderer>,
    prefix: &[usize],
) -> Execution {
    let world: Shared = Rc::new(RefCell::new(World {
        generations: vec![State::default()],
        local: vec![State::default(); scenario.nodes],
        installed: vec![None; scenario.nodes],
        waiting: vec![None; scenario.nodes],
        granted: vec![false; scenario.nodes],
        ..World::default()
    }));
    let mut ends = Vec::new();
    let mut next_run = vec![0; scenario.nodes];
    let mut tasks: Vec<Option<Task>> = Vec::new();
    let start = |node: usize, next_run: &mut Vec<usize>, ends: &mut Vec<_>| -> Option<Task> {
        let number = next_run[node];
        if number >= scenario.runs[node] {
            return None;
        }
        next_run[node] += 1;
        let mut task: Task = Box::pin(run(
            world.clone(),
            configs[node].clone(),
            renderer.clone(),
            (node, number, scenario),
        ));
        match poll(&mut task) {
            Poll::Pending => Some(task),
            Poll::Ready(end) => {
                ends.push((node, number, Some(end)));
                None
            }
        }
    };
    for node in 0..scenario.nodes {
        tasks.push(start(node, &mut next_run, &mut ends));
    }
    let (mut options, mut taken, mut crashes, mut steps) = (Vec::new(), Vec::new(), 0, 0);
    // Nodes with as many runs are alike but for their names: of those that have not moved yet,
    // only the first may move first (symmetry: the other orders are the same executions with
    // the nodes renamed).
    let mut fresh = vec![true; scenario.nodes];
    loop {
        let mut choices: Vec<Choice> = (0..scenario.nodes)
            .filter(|node| tasks[*node].is_some())
            .filter(|node| {
                !fresh[*node]
                    || (0..*node)
                        .all(|other| !fresh[other] || scenario.runs[other] != scenario.runs[*node])
            })
            .map(Choice::Step)
            .collect();
        if crashes < scenario.crashes {
            let crashable: Vec<Choice> = choices
                .iter()
                .map(|choice| match choice {
                    Choice::Step(node) | Choice::Crash(node) => Choice::Crash(*node),
                })
                .collect();
            choices.extend(crashable);
        }
        if choices.is_empty() {
            break;
        }
        let pick = prefix.get(taken.len()).copied().unwrap_or(0);
        options.push(choices.len());
        taken.push(pick);
        steps += 1;
        let (Choice::Step(moved) | Choice::Crash(moved)) = choices[pick];
        fresh[moved] = false;
        match choices[pick] {
            Choice::Step(node) => {
                world.borrow_mut().granted[node] = true;
                let task = tasks[node].as_mut().expect("a waiting node has a task");
                if let Poll::Ready(end) = poll(task) {
                    ends.push((node, next_run[node] - 1, Some(end)));
                    tasks[node] = start(node, &mut next_run, &mut ends);
                }
            }
            Choice::Crash(node) => {
                crashes += 1;
                tasks[node] = None;
                world.borrow_mut().waiting[node] = None;
                ends.push((node, next_run[node] - 1, None));
                tasks[node] = start(node, &mut next_run, &mut ends);
            }
        }
    }
    drop(tasks);
    let world = Rc::try_unwrap(world)
        .expect("every task is over")
        .into_inner();
    Execution {
        options,
        taken,
        world,
        ends,
        steps,
    }
}

/// Checks the properties of one finished execution; `Err` says which failed.
fn check(scenario: Scenario, execution: &Execution) -> Result<(), String> {
    let world = &execution.world;
    let state = world.generations.last().expect("a first generation");
    let pool = state.pools.get("web").cloned().unwrap_or_default();
    let decisions: Vec<_> = pool
        .scale_history
        .iter()
        .filter(|event| event.to > event.from)
        .collect();
    let mut called: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, token, _) in &world.calls {
        *called.entry(token.as_str()).or_default() += 1;
    }
    if let Some((token, times)) = called.iter().find(|(_, times)| **times > 1) {
        return Err(format!("token {token} reached the cloud {times} times"));
    }
    let decided: BTreeSet<&str> = decisions
        .iter()
        .filter_map(|event| event.token.as_deref())
        .collect();
    if decided.len() != decisions.len() {
        return Err("a scale-up without its own token in the history".into());
    }
    for token in called.keys() {
        if !decided.contains(token) {
            return Err(format!(
                "launch {token} is in no decision of the scale history"
            ));
        }
    }
    for token in &decided {
        let pending = pool
            .launches
            .iter()
            .any(|intent| &intent.token == token && intent.instance_ids.is_none());
        if !called.contains_key(token) && !pending {
            return Err(format!(
                "decision {token} was neither launched nor kept pending"
            ));
        }
    }
    for event in &decisions {
        if event.to - event.from > scenario.step_up {
            return Err(format!("a step of {} > step_up", event.to - event.from));
        }
    }
    for pair in pool.scale_history.windows(2) {
        if pair[1].at - pair[0].at < scenario.cooldown_s as i64 {
            return Err(format!(
                "decisions at {} and {}, within cooldown_s {}",
                pair[0].at, pair[1].at, scenario.cooldown_s
            ));
        }
    }
    // The first instance plus everything launched.
    let count = 1 + world.instances.len() as u32;
    if count > scenario.max {
        return Err(format!("{count} instances > max {}", scenario.max));
    }
    for (node, number, end) in &execution.ends {
        let made: Vec<&str> = world
            .calls
            .iter()
            .filter(|(n, r, _, _)| n == node && r == number)
            .map(|(_, _, token, _)| token.as_str())
            .collect();
        match end {
            Some(RunEnd::Reported(reported))
                if made != reported.iter().map(String::as_str).collect::<Vec<_>>() =>
            {
                return Err(format!(
                    "node {node} run {number} launched {made:?} but reported {reported:?}"
                ));
            }
            Some(RunEnd::Failed(error)) if error != "raced" || !made.is_empty() => {
                return Err(format!("node {node} run {number} failed: {error}"));
            }
            _ => {}
        }
    }
    if !world.needless_installs.is_empty() {
        return Err(format!(
            "node(s) {:?} installed a haproxy.cfg they already ran",
            world.needless_installs
        ));
    }
    Ok(())
}

/// Explores every execution of `scenario`; returns (executions, steps) or the first failing one.
fn explore(scenario: Scenario) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let configs: Vec<Rc<Config>> = (0..scenario.nodes)
        .map(|node| {
            Rc::new(
                ConfigBuilder::default()
                    .section(&format!(
                        "[state]\npath = \"{0}/state.json\"\nnode = \"lb-{node}\"\n[haproxy]\nconfig = \"{0}/haproxy.cfg\"\nstats_socket = \"{0}/admin.sock\"",
                        dir.path().display()
                    ))
                    .scaling_pool(
                        "web",
                        80,
                        "ready_check = \"none\"",
                        &format!(
                            "min = 1\nmax = {}\nstep_up = {}\ncooldown_s = {}\nwarmup_s = 0\nscale_up_above = 20\nscale_down_below = 1\nmetric = \"command\"\nmetric_command = [\"true\"]\nper_server = true",
                            scenario.max, scenario.step_up, scenario.cooldown_s
                        ),
                    )
                    .build(),
            )
        })
        .collect();
    let renderer = Rc::new(
        Renderer::compile(
            "{{#each pools}}backend {{backend}}\n{{#each servers}} server {{name}} {{address}}:{{port}}\n{{/each}}{{/each}}",
            Path::new("t.hbs"),
        )
        .unwrap(),
    );
    let (mut prefix, mut executions, mut steps) = (Vec::new(), 0, 0);
    loop {
        let execution = execute(scenario, &configs, &renderer, &prefix);
        executions += 1;
        steps += execution.steps;
        if let Err(why) = check(scenario, &execution) {
            panic!(
                "{scenario:?}: {why}\nchoices: {:?}\ncalls: {:?}\nhistory: {:?}",
                execution.taken,
                execution.world.calls,
                execution
                    .world
                    .generations
                    .last()
                    .and_then(|state| state.pools.get("web"))
                    .map(|pool| &pool.scale_history)
            );
        }
        // The next prefix: the last point with a choice left, one further.
        let mut taken = execution.taken;
        while let Some(last) = taken.pop() {
            if last + 1 < execution.options[taken.len()] {
                taken.push(last + 1);
                break;
            }
        }
        if taken.is_empty() {
            return (executions, steps);
        }
        prefix = taken;
    }
}

/// Runs `scenario`'s exploration and says how big it was.
fn explored(name: &str, scenario: Scenario) -> usize {
    let (executions, steps) = explore(scenario);
    eprintln!("{name}: {executions} interleavings, {steps} steps, every property held");
    executions
}

#[test]
fn two_nodes_in_the_same_second_take_one_decision_with_a_cooldown_crashes_included() {
    let scenario = Scenario {
        nodes: 2,
        runs: [1, 1, 0],
        interval_s: 0,
        cooldown_s: 20,
        step_up: 1,
        max: 4,
        crashes: 1,
        split_listing: true,
    };
    assert!(explored("2 nodes, same second, cooldown 20, 1 crash", scenario) > 100);
}

#[test]
fn two_nodes_without_a_cooldown_never_pass_step_up_or_max_crashes_included() {
    let scenario = Scenario {
        nodes: 2,
        runs: [2, 1, 0],
        interval_s: 10,
        cooldown_s: 0,
        step_up: 1,
        max: 3,
        crashes: 1,
        split_listing: false,
    };
    assert!(explored("2 nodes (2 runs and 1), cooldown 0, 1 crash", scenario) > 1_000);
}

#[test]
fn three_nodes_in_the_same_second_take_one_decision() {
    let scenario = Scenario {
        nodes: 3,
        runs: [1, 1, 1],
        interval_s: 0,
        cooldown_s: 20,
        step_up: 1,
        max: 3,
        crashes: 0,
        split_listing: false,
    };
    assert!(explored("3 nodes, same second, cooldown 20", scenario) > 1_000);
}
