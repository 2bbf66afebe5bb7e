//! The simulated world around one pool: a cloud whose instances boot in `boot_s`, an HAProxy
//! whose counters grow with the load each in-service server serves (and reset on a reload), and
//! a clock. Each run hands the very same facts a real run observes to the real decision core
//! ([`crate::decide::scaling::plan_scaling`]) and carries out its plan as `apply` would; the state
//! goes from run to run through the real [`PoolState`].

use std::collections::BTreeMap;

use crate::config::scaling::{TAG_LAUNCH_TOKEN, TAG_POOL};
use crate::config::{PoolConfig, Scaling};
use crate::decide::scaling::{Event, Role, ScalingFacts, ScalingPlan, plan_scaling};
use crate::model::{
    Discovered, Endpoint, Info, Instance, InstanceState, OldWorkers, PoolState, Reading, Row,
    StatsSnapshot, Status, Tags,
};

/// The simulated HAProxy node's name in the samples.
const NODE: &str = "simulated";

/// How long a request holds a session, for `current_sessions` (Little's law).
const SESSION_S: f64 = 0.1;

/// What the simulation knows of an instance beside what the provider reports.
#[derive(Debug)]
struct Server {
    /// Its role in the rendered haproxy.cfg (`None`: not rendered yet).
    role: Option<Role>,
    /// When it can take traffic.
    booted_at: i64,
    /// Requests served since HAProxy's last reload.
    requests: f64,
}

/// What a run did to the fleet, for the figures and the plot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunOutcome {
    /// +1 for a scale-up, -1 for a scale-down, 0 for none.
    pub(crate) direction: i8,
    pub(crate) launched: u32,
}

/// The pool's world: its fleet, HAProxy's counters and what is rendered.
#[derive(Debug)]
pub(crate) struct World<'a> {
    pool: &'a PoolConfig,
    scaling: &'a Scaling,
    rapid: (u32, u64),
    launch_timeout_s: u64,
    boot_s: i64,
    /// A change of the rendered servers reloads HAProxy (`haproxy.apply = "reload"`, or no
    /// admin socket), resetting its counters; otherwise it goes through the runtime API.
    reloads: bool,
    /// The instances as the provider lists them, and beside each its simulation.
    fleet: Vec<Discovered>,
    servers: Vec<Server>,
    /// The roles of the servers in the rendered haproxy.cfg (the last run's plan).
    rendered: BTreeMap<String, Role>,
    state: PoolState,
    pid: u64,
    pid_started: i64,
    next_id: u64,
    /// Requests per second that found no capacity over the last tick, for the queue metric.
    unserved_rate: f64,
    /// Requests per second offered over the last tick, and what one server serves, for an
    /// external metric.
    offered: f64,
    capacity: f64,
    /// Servers rendered in service, and draining.
    counts: [u32; 2],
    /// HAProxy's stats as the last run read them.
    snapshot: StatsSnapshot,
}

impl<'a> World<'a> {
    /// An empty pool; the first run launches up to `min`.
    pub(crate) fn new(
        pool: &'a PoolConfig,
        scaling: &'a Scaling,
        rapid: (u32, u64),
        launch_timeout_s: u64,
        boot_s: u64,
        reloads: bool,
    ) -> World<'a> {
        let mut world = World {
            pool,
            scaling,
            rapid,
            launch_timeout_s,
            boot_s: boot_s as i64,
            reloads,
            fleet: Vec::new(),
            servers: Vec::new(),
            rendered: BTreeMap::new(),
            state: PoolState::default(),
            pid: 1,
            pid_started: 0,
            next_id: 1,
            unserved_rate: 0.0,
            offered: 0.0,
            capacity: 1.0,
            counts: [0, 0],
            snapshot: StatsSnapshot {
                node: NODE.to_owned(),
                info: Info {
                    pid: 1,
                    uptime_s: 0,
                    version: None,
                },
                rows: Vec::new(),
                old_workers: OldWorkers::Untracked,
            },
        };
        world.snapshot.rows = world.rows();
        world
    }

    /// Servers that take traffic: rendered in service (and so booted).
    pub(crate) fn in_service(&self) -> u32 {
        self.counts[0]
    }

    /// Servers launched that are not in service or draining yet.
    pub(crate) fn booting(&self) -> u32 {
        self.fleet.len() as u32 - self.in_service() - self.draining()
    }

    pub(crate) fn draining(&self) -> u32 {
        self.counts[1]
    }

    /// Every instance that costs: launched and not terminated.
    pub(crate) fn fleet(&self) -> u32 {
        self.fleet.len() as u32
    }

    /// Each server's rendered role and the counts, after the rendering changed.
    fn rendered_roles(&mut self) {
        for (found, server) in self.fleet.iter().zip(&mut self.servers) {
            server.role = self.rendered.get(&found.instance.id).copied();
        }
        let count = |role| self.servers.iter().filter(|s| s.role == Some(role)).count() as u32;
        self.counts = [count(Role::InService), count(Role::Draining)];
        self.snapshot.rows = self.rows();
    }

    /// What an external metric reads: with `per_server`, the pool's total (the requests per
    /// second offered, like a queue's arrivals); without, each server's utilization (served
    /// over capacity, at most 1, like a CPU average).
    fn external_reading(&self, per_server: bool, now: i64) -> Reading {
        let serving = f64::from(self.in_service());
        let value = if per_server {
            self.offered
        } else if serving > 0.0 {
            (self.offered / (serving * self.capacity)).min(1.0)
        } else {
            0.0
        };
        Reading::Value {
            text: value.to_string(),
            at: Some(now as f64),
        }
    }

    /// Serves `load` req/s for `seconds` on the servers in service, each up to `capacity`;
    /// returns the requests that found no capacity.
    pub(crate) fn serve(&mut self, load: f64, capacity: f64, seconds: f64) -> f64 {
        let serving = self.in_service();
        let served = load.min(f64::from(serving) * capacity);
        self.unserved_rate = load - served;
        (self.offered, self.capacity) = (load, capacity);
        if serving > 0 {
            let share = served / f64::from(serving) * seconds;
            for server in &mut self.servers {
                if server.role == Some(Role::InService) {
                    server.requests += share;
                }
            }
        }
        (load - served) * seconds
    }

    /// One run of the reconciler at `now`: observe, decide with the real core, apply.
    pub(crate) fn run(&mut self, now: i64) -> RunOutcome {
        for (found, server) in self.fleet.iter_mut().zip(&self.servers) {
            if now >= server.booted_at {
                found.instance.state = InstanceState::Running;
            }
        }
        self.stats(now);
        let external = self
            .scaling
            .metric
            .external()
            .map(|external| self.external_reading(external.per_server, now));
        let plan = plan_scaling(&ScalingFacts {
            pool: self.pool,
            scaling: self.scaling,
            instances: &self.fleet,
            stats: Some(&self.snapshot),
            // The readiness probe passes once a server is booted (`boot_s` includes it).
            ready: &BTreeMap::new(),
            found_by_token: &BTreeMap::new(),
            external: external.as_ref(),
            state: &self.state,
            now,
            rapid: self.rapid,
            launch_timeout_s: self.launch_timeout_s,
            clock_off_s: None,
            // One simulated node deciding at most once a simulated second.
            token_salt: "simulate",
            node: "simulate",
        });
        self.apply(plan, now)
    }

    /// Updates what HAProxy's stats say: a row per rendered server and the backend's. The rows are
    /// rebuilt only when the rendering changes ([`World::rows`]); each run updates their counters.
    fn stats(&mut self, now: i64) {
        let uptime = (now - self.pid_started).max(0);
        let mut rows = self.snapshot.rows.iter_mut();
        for server in self.servers.iter().filter(|server| server.role.is_some()) {
            let Some(row) = rows.next() else { break };
            let requests = server.requests.round() as u64;
            let rate = server.requests / uptime.max(1) as f64;
            row.scur = if server.role == Some(Role::InService) {
                (rate * SESSION_S).round() as u64
            } else {
                0
            };
            row.stot = requests;
            row.req_tot = Some(requests);
        }
        if let Some(backend) = rows.next() {
            // Requests per second that found no capacity stand in for the queue.
            backend.qcur = Some(self.unserved_rate.round() as u64);
        }
        self.snapshot.info = Info {
            pid: self.pid,
            uptime_s: uptime as u64,
            version: None,
        };
    }

    /// The stats rows of the rendered servers (in fleet order) and the backend's.
    fn rows(&self) -> Vec<Row> {
        let row = |name: &str, status| Row::idle(&self.pool.backend, name, status);
        self.fleet
            .iter()
            .zip(&self.servers)
            .filter_map(|(found, server)| {
                let status = match server.role? {
                    Role::InService => Status::Up,
                    Role::Booting => Status::Maint,
                    Role::Draining => Status::Drain,
                };
                Some(row(&found.instance.id, status))
            })
            .chain([row("BACKEND", Status::Up)])
            .collect()
    }

    /// Carries the plan out as `apply` does, and reloads (counters reset) when the rendered
    /// servers or their roles change.
    fn apply(&mut self, plan: ScalingPlan, now: i64) -> RunOutcome {
        let ScalingPlan {
            roles,
            launches,
            terminates,
            events,
            mut next,
            ..
        } = plan;
        if !terminates.is_empty() {
            let kept: Vec<bool> = self
                .fleet
                .iter()
                .map(|found| !terminates.iter().any(|gone| gone.id == found.instance.id))
                .collect();
            let mut keep = kept.iter();
            self.fleet.retain(|_| *keep.next().unwrap_or(&true));
            let mut keep = kept.iter();
            self.servers.retain(|_| *keep.next().unwrap_or(&true));
        }
        let mut launched = 0;
        for launch in &launches {
            let ids: Vec<String> = (0..launch.count)
                .map(|_| self.launch(&launch.token, now))
                .collect();
            launched += launch.count;
            for intent in next.launches.iter_mut().filter(|i| i.token == launch.token) {
                intent.instance_ids = Some(ids.clone());
            }
        }
        // (`next.servers`, what a real run rendered, is read only when rendering: left as is.)
        if roles != self.rendered {
            if self.reloads {
                // A new haproxy.cfg: HAProxy reloads, a new worker starts its counters from 0.
                self.pid += 1;
                self.pid_started = now;
                for server in &mut self.servers {
                    server.requests = 0.0;
                }
                next.reloaded_at = Some(now);
            }
            // Otherwise the runtime API changes the servers: the worker and its counters stay.
            self.rendered = roles;
            self.rendered_roles();
        }
        self.state = next;
        let direction = events
            .iter()
            .find_map(|event| match event {
                Event::Scaled { from, to, .. } => Some(if to > from { 1 } else { -1 }),
                _ => None,
            })
            .unwrap_or(0);
        RunOutcome {
            direction,
            launched,
        }
    }

    /// A new instance tagged for the pool and with the launch's token; returns its id.
    fn launch(&mut self, token: &str, now: i64) -> String {
        let id = format!("sim-{}", self.next_id);
        let port = 10_000 + (self.next_id % 50_000) as u16;
        self.next_id += 1;
        let launch_time = jiff::Timestamp::from_second(now)
            .map(|at| at.to_string())
            .ok();
        let instance = Instance {
            id: id.clone(),
            state: InstanceState::Pending,
            private_ip: Some("127.0.0.1".to_owned()),
            public_ip: None,
            port: Some(port),
            launch_time,
            zone: None,
            image_id: None,
            tags: Tags::from([
                (TAG_POOL.to_owned(), self.pool.name.clone()),
                (TAG_LAUNCH_TOKEN.to_owned(), token.to_owned()),
            ]),
        };
        self.fleet.push(Discovered {
            instance,
            endpoint: Ok(Endpoint {
                host: "127.0.0.1".to_owned(),
                port,
            }),
        });
        self.servers.push(Server {
            role: None,
            booted_at: now + self.boot_s,
            requests: 0.0,
        });
        id
    }
}
