//! The inputs of `benches/stages.rs` at any fleet size: `n` servers in scaling pools of at
//! most 10,000 (min = max = their size, so they hold), as HAProxy 2.6, the exec provider and EC2 report them, with a
//! full sample history in its state. Built from recorded output (`tests/fixtures/`): a `show
//! stat` of Debian's HAProxy 2.6.12 and a DescribeInstances page of moto 5.2.5, one row and one
//! instance of each repeated `n` times.

use std::fmt::Write as _;
use std::path::Path;

use crate::cloud::Provider;
use crate::config::Config;
use crate::decide::membership::BackendPlan;
use crate::decide::plan::{self, Facts, Observations, Plan};
use crate::decide::render::Renderer;
use crate::model::{Info, Instance, Observed, OldWorkers, Row, State, StatsSnapshot};
use crate::store::{FileStore, StateStore};

const SHOW_STAT: &str = include_str!("../../tests/fixtures/show-stat-haproxy-2.6.12.csv");
const DESCRIBE_PAGE: &str =
    include_str!("../../tests/fixtures/ec2-describe-instances-moto-5.2.5.xml");
const TEMPLATE: &str = include_str!("../../templates/haproxy.cfg.hbs");
/// Servers per pool.
const POOL_SIZE: usize = 10_000;

/// One pool of `servers` servers, and everything each stage of a run reads.
#[derive(Debug)]
pub struct Fleet {
    pub servers: usize,
    config: Config,
    renderer: Renderer,
    instances: Vec<Instance>,
    rows: Vec<Row>,
    /// `show stat` as HAProxy prints it for these servers.
    pub show_stat: String,
    /// The exec provider's `list` output for them.
    pub exec_json: Vec<u8>,
    /// DescribeInstances pages of 1,000 instances.
    pub ec2_pages: Vec<String>,
    /// The state after enough runs to keep a full sample history.
    pub state: State,
    /// haproxy.cfg as installed (what this fleet renders), and one with a server changed.
    pub installed: String,
    pub installed_one_off: String,
    now: i64,
    dir: tempfile::TempDir,
}

fn id(index: usize) -> String {
    format!("i-{index:017x}")
}

fn address(index: usize) -> String {
    format!(
        "10.{}.{}.{}",
        1 + index / 65_536,
        index / 256 % 256,
        index % 256
    )
}

impl Fleet {
    pub fn new(servers: usize) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        // Pools of at most 10,000 servers (`scaling.max`'s bound), as a fleet that large is
        // run: one backend each.
        let pools = servers.div_ceil(POOL_SIZE).max(1);
        let mut text = format!(
            "[state]\npath = \"{}/state.json\"\n[haproxy]\nconfig = \"{}/haproxy.cfg\"\nstats_socket = \"{}/admin.sock\"\n",
            dir.path().display(),
            dir.path().display(),
            dir.path().display(),
        );
        for pool in 0..pools {
            let size = POOL_SIZE.min(servers - pool * POOL_SIZE);
            let _ = write!(
                text,
                "[[pool]]\nname = \"web{pool}\"\nport = 8080\nprovider = \"exec\"\nready_check = \"none\"\n[pool.exec]\nlist = [\"true\"]\nlaunch = [\"true\"]\nterminate = [\"true\"]\n[pool.scaling]\nmin = {size}\nmax = {size}\nwarmup_s = 0\nscale_up_above = 100\nscale_down_below = 10\n"
            );
        }
        let config = Config::parse(&text, Path::new("bench.toml")).expect("bench config");
        let renderer = Renderer::compile(TEMPLATE, Path::new("haproxy.cfg.hbs")).expect("template");
        let exec_json = serde_json::to_vec(
            &(0..servers)
                .map(|index| {
                    serde_json::json!({
                        "id": id(index),
                        "address": address(index),
                        "tags": {"Name": format!("web-{index}")},
                    })
                })
                .collect::<Vec<_>>(),
        )
        .expect("json");
        let instances = crate::cloud::exec::parse_list(&exec_json).expect("exec json");
        let mut fleet = Fleet {
            servers,
            config,
            renderer,
            instances,
            rows: Vec::new(),
            show_stat: String::new(),
            exec_json,
            ec2_pages: describe_pages(servers),
            state: State::default(),
            installed: String::new(),
            installed_one_off: String::new(),
            now: 1_800_000_000,
            dir,
        };
        // Runs a minute apart, the counters growing, until the history is full.
        for run in 0..=20 {
            fleet.show_stat = show_stat(servers, run * 600);
            fleet.rows = fleet.parse_show_stat();
            let plan = fleet.plan(&fleet.observations());
            fleet.installed = plan.rendered.clone();
            fleet.state = plan.next_state;
            fleet.now += 60;
        }
        fleet.installed_one_off = fleet.installed.replacen(&address(0), "10.255.0.1", 1);
        fleet
    }

    /// Parses `show stat`.
    pub fn parse_show_stat(&self) -> Vec<Row> {
        crate::haproxy::stats::parse_show_stat(&self.show_stat).expect("show stat")
    }

    /// Parses the exec provider's `list` output.
    pub fn parse_exec_json(&self) -> Vec<Instance> {
        crate::cloud::exec::parse_list(&self.exec_json).expect("exec json")
    }

    /// What observing the pool finds (the instances listed, the stats read), built outside
    /// the stages that are timed.
    pub fn observations(&self) -> Observations<'_> {
        Observations::from_fn(&self.config.pools, |pool| Observed {
            stats: Some(StatsSnapshot {
                node: "local".to_owned(),
                info: Info {
                    pid: 1,
                    uptime_s: 86_400,
                    version: None,
                },
                // As observe gives each pool its backend's rows.
                rows: self
                    .rows
                    .iter()
                    .filter(|row| row.proxy == pool.backend)
                    .cloned()
                    .collect(),
                old_workers: OldWorkers::Untracked,
            }),
            ..crate::testing::observed(pool, self.instances_of(pool))
        })
    }

    /// The whole pure core of a run: scale, sort into servers, render, compare, diff.
    pub fn plan(&self, observed: &Observations<'_>) -> Plan {
        plan::build(self.facts(observed), &self.renderer).expect("plan")
    }

    /// The instances of the N-th pool: the N-th slice of 10,000.
    fn instances_of(&self, pool: &crate::config::PoolConfig) -> &[Instance] {
        let index = self
            .config
            .pools
            .iter()
            .position(|candidate| candidate.name == pool.name)
            .expect("a pool of this config");
        let start = (index * POOL_SIZE).min(self.instances.len());
        &self.instances[start..(start + POOL_SIZE).min(self.instances.len())]
    }

    fn facts<'a>(&'a self, observed: &'a Observations<'a>) -> Facts<'a> {
        Facts {
            config: &self.config,
            observed,
            installed: Some(&self.installed),
            state: &self.state,
            now: self.now,
            clock_off_s: None,
            haproxy_version: None,
            token_salt: "bench",
        }
    }

    /// Deciding alone: each pool's scaling decision and servers, nothing rendered.
    pub fn decide(&self, observed: &Observations<'_>) -> Vec<BackendPlan> {
        plan::plan_pools(&self.facts(observed))
    }

    /// Rendering alone, from decided pools.
    pub fn render(&self, pools: &mut [BackendPlan]) -> String {
        crate::decide::context::render_leaving_out_unsafe(&self.renderer, &self.config, pools)
            .expect("render")
    }

    /// Saves the state to its file and loads it back; returns the bytes on disk.
    pub async fn save_and_load(&self) -> usize {
        let store = FileStore::new(&self.config.state_path);
        let (_, revision) = store.load().await.expect("load");
        store.save(&self.state, &revision).await.expect("save");
        let (loaded, _) = store.load().await.expect("load");
        assert_eq!(loaded.pools.len(), self.state.pools.len());
        std::fs::metadata(&self.config.state_path)
            .map(|meta| meta.len() as usize)
            .unwrap_or_default()
    }

    /// Lists the pool from EC2 through the SDK, against a local server answering with
    /// [`Fleet::ec2_pages`]; returns the instances found.
    pub async fn ec2_list(&self, endpoint_url: &str) -> usize {
        let ec2 = crate::cloud::ec2::Ec2::for_endpoint(endpoint_url);
        let pool = Config::parse(
            "[[pool]]\nname = \"web\"\nport = 8080\n[pool.discover]\nsecurity_group = \"web\"\n",
            Path::new("bench.toml"),
        )
        .expect("ec2 bench config")
        .pools
        .remove(0);
        ec2.list(&pool).await.expect("describe").len()
    }

    /// Serves [`Fleet::ec2_pages`] over HTTP on loopback (a thread, keep-alive); returns the
    /// endpoint URL.
    pub fn serve_ec2(&self) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let pages = std::sync::Arc::new(self.ec2_pages.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let pages = std::sync::Arc::clone(&pages);
                std::thread::spawn(move || answer_describes(stream, &pages));
            }
        });
        url
    }

    /// The folder the state file is written in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `show stat` for `servers` servers in backends of 10,000 (`web0`, `web1`, ...): the recorded
/// server row of 2.6.12 with its names and counters changed, and each backend's row.
fn show_stat(servers: usize, requests: usize) -> String {
    let mut lines = SHOW_STAT.lines();
    let header = lines.next().expect("header");
    let server_row = lines
        .clone()
        .find(|line| line.starts_with("web,s1,"))
        .expect("server row");
    let backend_row = lines
        .find(|line| line.starts_with("web,BACKEND,"))
        .expect("backend row");
    let fields: Vec<&str> = server_row.split(',').collect();
    let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| columns.iter().position(|c| *c == name).expect(name);
    let (stot, req_tot) = (column("stot"), column("req_tot"));
    let mut text = String::with_capacity((servers + 2) * (server_row.len() + 16));
    text.push_str(header);
    text.push('\n');
    for pool in 0..servers.div_ceil(POOL_SIZE).max(1) {
        let backend = format!("web{pool}");
        for index in pool * POOL_SIZE..((pool + 1) * POOL_SIZE).min(servers) {
            let (name, count) = (id(index), (requests + index % 7).to_string());
            for (at, field) in fields.iter().enumerate() {
                if at > 0 {
                    text.push(',');
                }
                text.push_str(match at {
                    0 => &backend,
                    1 => &name,
                    at if at == stot || at == req_tot => &count,
                    _ => field,
                });
            }
            text.push('\n');
        }
        text.push_str(&backend);
        text.push_str(&backend_row["web".len()..]);
        text.push('\n');
    }
    text
}

/// DescribeInstances pages of at most 1,000 of `servers` instances, each linked to the next by
/// its `nextToken` (the page number).
fn describe_pages(servers: usize) -> Vec<String> {
    let start =
        DESCRIBE_PAGE.find("<instancesSet>").expect("instancesSet") + "<instancesSet>".len();
    let end = DESCRIBE_PAGE.find("</instancesSet>").expect("instancesSet");
    let (head, item, tail) = (
        &DESCRIBE_PAGE[..start],
        &DESCRIBE_PAGE[start..end],
        &DESCRIBE_PAGE[end..],
    );
    let pages = servers.div_ceil(1000).max(1);
    (0..pages)
        .map(|page| {
            let mut text = String::from(head);
            for index in page * 1000..((page + 1) * 1000).min(servers) {
                text.push_str(
                    &item
                        .replace("i-dc86de50db1fcea93", &id(index))
                        .replace("10.11.161.105", &address(index))
                        .replace(
                            "<value>web-1</value>",
                            &format!("<value>web-{index}</value>"),
                        ),
                );
            }
            let mut tail = tail.to_owned();
            if page + 1 < pages {
                let at = tail.find("</DescribeInstancesResponse>").expect("end");
                let mut token = String::new();
                let _ = write!(token, "<nextToken>{}</nextToken>", page + 1);
                tail.insert_str(at, &token);
            }
            text + &tail
        })
        .collect()
}

/// Answers each DescribeInstances request on `stream` with the page its `NextToken` names.
fn answer_describes(stream: std::net::TcpStream, pages: &[String]) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body);
        let page = body
            .split('&')
            .find_map(|pair| pair.strip_prefix("NextToken="))
            .and_then(|token| token.parse::<usize>().ok())
            .unwrap_or(0);
        let text = &pages[page.min(pages.len() - 1)];
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}
