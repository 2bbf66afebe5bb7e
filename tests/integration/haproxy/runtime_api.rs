//! Membership changes through the runtime API against a real master-worker HAProxy (issue 18):
//! servers added, re-addressed, re-weighted and removed with no reload (the master's reload
//! counter and the worker's pid unchanged) and the file on disk naming what runs; a structural
//! change still reloads, and the reload keeps drains and servers in maintenance; a crash between
//! the runtime commands and the install converges; `apply = "reload"` keeps the old behaviour.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use haproxy_autoscaler::surface::decide::installed_servers::{ConfigLine, config_lines};
use haproxy_autoscaler::surface::failpoint;
use haproxy_autoscaler::surface::haproxy::runtime::parse_servers_state;
use haproxy_autoscaler::surface::haproxy::stats::parse_show_stat;
use haproxy_autoscaler::surface::model::Status;

use super::real::{LiveHaproxy, cli, get, live_haproxy_toml, loopback_backend, start_on_own_file};
use crate::util::{
    Deployment, assert_exit, describe, fixture_exec_pool, free_port, haproxy_version, stdout,
};

const TEMPLATE: &str = "\
global
    master-worker
    stats socket {{haproxy.stats_socket}} mode 600 level admin expose-fd listeners
    server-state-file {{haproxy.server_state_file}}
    hard-stop-after 5s
defaults
    mode http
    option idle-close-on-response
    load-server-state-from-file global
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend http
    bind 127.0.0.1:FRONTEND_PORT
    default_backend web
backend web
    balance roundrobin
    default-server check inter 500ms fall 2 rise 1
{{#each pools}}{{#each servers}}
    server {{name}} {{address}}:{{port}}{{#if tags.weight}} weight {{tags.weight}}{{/if}}{{#if booting}} disabled{{/if}}
{{/each}}{{/each}}
";

/// A deployment of one exec pool whose instances are a JSON file the test edits, in front of a
/// live HAProxy that the tool reloads through its master socket.
struct Site {
    deployment: Deployment,
    haproxy: LiveHaproxy,
    frontend: u16,
}

impl Site {
    fn start(apply: &str) -> Site {
        let mut deployment = Deployment::new("http://127.0.0.1:9");
        let dir = deployment.dir.path().to_owned();
        let frontend = free_port();
        deployment.haproxy_toml = live_haproxy_toml(&deployment, apply);
        deployment.pool_toml = format!(
            "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"exec\"\n[pool.exec]\nlist = [\"cat\", \"{}\"]\n",
            dir.join("instances.json").display()
        );
        deployment.template = TEMPLATE.replace("FRONTEND_PORT", &frontend.to_string());
        let haproxy = start_on_own_file(&deployment, frontend);
        Site {
            deployment,
            haproxy,
            frontend,
        }
    }

    fn admin(&self) -> PathBuf {
        self.deployment.path("haproxy/admin.sock")
    }

    /// Sets the pool's instances: (id, port, weight tag), all running.
    fn instances(&self, instances: &[(&str, u16, Option<&str>)]) {
        self.instances_pending(instances, &[]);
    }

    /// Sets the pool's instances, those named in `pending` pending (rendered `disabled`).
    fn instances_pending(&self, instances: &[(&str, u16, Option<&str>)], pending: &[&str]) {
        let list: Vec<serde_json::Value> = instances
            .iter()
            .map(|(id, port, weight)| {
                let mut tags = serde_json::Map::new();
                if let Some(weight) = weight {
                    tags.insert("weight".into(), (*weight).into());
                }
                let state = if pending.contains(id) {
                    "pending"
                } else {
                    "running"
                };
                serde_json::json!({"id": id, "address": "127.0.0.1", "port": port,
                                   "state": state, "tags": tags})
            })
            .collect();
        std::fs::write(
            self.deployment.path("instances.json"),
            serde_json::to_string(&list).unwrap(),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str], failpoint: Option<&str>) -> Output {
        self.deployment.write();
        let mut command = self.deployment.std_command();
        command
            .args(args)
            .env("EXEC_PROVIDER_STATE", self.deployment.path("provider.json"));
        if let Some(point) = failpoint {
            command.env(failpoint::ENV, point);
        }
        command.output().expect("run binary")
    }

    fn run_ok(&self) -> String {
        let output = self.run(&[], None);
        assert_exit(&output, 0);
        stdout(&output)
    }

    /// The master's reload count and the current worker's pid.
    fn reloads_and_worker(&self) -> (u64, u64) {
        let proc = self.haproxy.master("show proc");
        let master = proc
            .lines()
            .find(|line| line.contains("master"))
            .unwrap_or_else(|| panic!("no master line: {proc}"));
        let reloads = master.split_whitespace().nth(2).unwrap().parse().unwrap();
        let info = cli(&self.admin(), "show info");
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("Pid: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (reloads, pid)
    }

    /// `show servers state web`: name → (port, admin state, weight).
    fn running(&self) -> BTreeMap<String, (u16, u32, u32)> {
        let text = cli(&self.admin(), "show servers state web");
        parse_servers_state(&text)
            .unwrap_or_else(|error| panic!("{error}: {text}"))
            .into_iter()
            .map(|server| (server.name, (server.port, server.admin, server.weight)))
            .collect()
    }

    /// The installed file's servers of `web`: name → port.
    fn installed(&self) -> BTreeMap<String, u16> {
        let text = std::fs::read_to_string(self.deployment.haproxy_cfg()).unwrap();
        config_lines(&text)
            .filter_map(ConfigLine::server)
            .map(|(_, name, address, _)| {
                let port = address.rsplit_once(':').unwrap().1.parse().unwrap();
                (name.to_owned(), port)
            })
            .collect()
    }

    /// The file on disk names exactly the servers that run, at the same ports.
    fn assert_file_matches_haproxy(&self, when: &str) {
        let running: BTreeMap<String, u16> = self
            .running()
            .into_iter()
            .map(|(name, (port, _, _))| (name, port))
            .collect();
        assert_eq!(running, self.installed(), "{when}");
    }

    /// Waits until every server of `web` in traffic passes its health check.
    fn wait_all_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = parse_show_stat(&cli(&self.admin(), "show stat")).unwrap();
            let down: Vec<(&str, &Status)> = rows
                .iter()
                .filter(|row| row.proxy == "web" && row.name != "BACKEND")
                .filter(|row| !matches!(row.status, Status::Up | Status::Drain))
                .map(|row| (row.name.as_str(), &row.status))
                .collect();
            if down.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "servers not up: {down:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn assert_says(output: &str, says: &str) {
    assert!(output.contains(says), "{says:?} not in:\n{output}");
}

#[test]
fn servers_join_move_and_leave_through_the_runtime_api_without_a_reload() {
    let mut site = Site::start("runtime");
    let (a, b, c) = (
        loopback_backend(100_000),
        loopback_backend(100_000),
        loopback_backend(100_000),
    );
    site.instances(&[("i-a", a, None)]);
    let first = site.run_ok();
    assert_says(&first, "reload haproxy: ");
    assert_says(
        &first,
        "the installed haproxy.cfg is not the one this tool last loaded",
    );
    site.wait_all_up();
    let before = site.reloads_and_worker();
    assert_eq!(before.0, 1, "the first install reloads");

    // Joins: through the runtime API; --plan says so first, with the commands.
    site.instances(&[("i-a", a, None), ("i-b", b, Some("3"))]);
    let plan = stdout(&site.run(&["--plan"], None));
    assert_says(
        &plan,
        "apply through the runtime API: config sha256 changed to",
    );
    assert_says(&plan, "\n    add server web/i-b 127.0.0.1:");
    assert_says(
        &plan,
        " check inter 500ms fall 2 rise 1 weight 3\n    enable health web/i-b\n    set server web/i-b state ready",
    );
    let joined = site.run_ok();
    assert_says(&joined, "apply through the runtime API");
    assert!(!joined.contains("reload haproxy"), "{joined}");
    assert_eq!(site.reloads_and_worker(), before, "no reload, same worker");
    site.assert_file_matches_haproxy("after a join");
    assert_eq!(site.running()["i-b"].2, 3, "weight 3");
    site.wait_all_up();
    for _ in 0..6 {
        assert!(get(site.frontend).ends_with("ok"));
    }

    // Re-addressed and re-weighted in place.
    site.instances(&[("i-a", a, None), ("i-b", c, Some("1"))]);
    let moved = site.run_ok();
    assert_says(
        &moved,
        &format!("set server web/i-b addr 127.0.0.1 port {c}"),
    );
    assert_says(&moved, "set server web/i-b weight 1");
    assert_eq!(site.reloads_and_worker(), before);
    site.assert_file_matches_haproxy("after a move");
    assert_eq!(site.running()["i-b"], (c, 0, 1));

    // A drain through the runtime API, then the server leaves.
    assert_eq!(
        cli(&site.admin(), "set server web/i-a state drain").trim(),
        ""
    );
    site.instances(&[("i-b", c, Some("1"))]);
    let left = site.run_ok();
    assert_says(
        &left,
        "set server web/i-a state maint\n    del server web/i-a",
    );
    assert_eq!(site.reloads_and_worker(), before);
    site.assert_file_matches_haproxy("after a leave");
    assert!(get(site.frontend).ends_with("ok"));

    // Nothing left to do: the file and what runs agree.
    let settled = site.run(&["--plan", "--detailed-exitcode"], None);
    assert_exit(&settled, 0);

    // A structural change reloads, and the reload keeps what the runtime API set: a drain and a
    // server in maintenance (saved to the server-state-file just before).
    site.instances(&[("i-b", c, Some("1")), ("i-a", a, None)]);
    site.run_ok();
    site.wait_all_up();
    assert_eq!(
        cli(&site.admin(), "set server web/i-a state drain").trim(),
        ""
    );
    assert_eq!(
        cli(&site.admin(), "set server web/i-b state maint").trim(),
        ""
    );
    site.deployment.template = site
        .deployment
        .template
        .replace("    timeout server 5s\n", "    timeout server 6s\n");
    let plan = stdout(&site.run(&["--plan"], None));
    assert_says(
        &plan,
        "a reload because a line other than a managed backend's servers changed: `timeout server 5s` became `timeout server 6s`",
    );
    let reloaded = site.run_ok();
    assert_says(&reloaded, "reload haproxy: ");
    let after = site.reloads_and_worker();
    assert_eq!(after.0, before.0 + 1, "one reload");
    assert_ne!(after.1, before.1, "a new worker");
    let running = site.running();
    assert_eq!(running["i-a"].1 & 0x08, 0x08, "still draining: {running:?}");
    assert_eq!(
        running["i-b"].1 & 0x01,
        0x01,
        "still in maintenance: {running:?}"
    );
    assert!(site.deployment.path("haproxy/server-state").exists());
}

/// `site` with i-a installed by a first run, then i-b listed too (not yet run): the site, both
/// backends' ports, and the reload count and worker pid before the second run.
fn one_server_installed_then_a_second(site: Site) -> (Site, (u16, u16), (u64, u64)) {
    let (a, b) = (loopback_backend(100_000), loopback_backend(100_000));
    site.instances(&[("i-a", a, None)]);
    site.run_ok();
    let before = site.reloads_and_worker();
    site.instances(&[("i-a", a, None), ("i-b", b, None)]);
    (site, (a, b), before)
}

#[test]
fn a_crash_between_the_runtime_commands_and_the_install_converges_with_one_reload() {
    let (site, _, before) = one_server_installed_then_a_second(Site::start("runtime"));
    let crashed = site.run(&[], Some("after-runtime-commands"));
    assert!(!crashed.status.success(), "{}", describe(&crashed));
    // HAProxy runs i-b, the file does not name it yet.
    assert!(site.running().contains_key("i-b"));
    assert!(!site.installed().contains_key("i-b"));
    let recovered = site.run_ok();
    assert_says(
        &recovered,
        "reload haproxy: the runtime API change did not take: HAProxy refused `add server web/i-b",
    );
    assert_eq!(site.reloads_and_worker().0, before.0 + 1);
    site.assert_file_matches_haproxy("after the recovery");
    assert_exit(&site.run(&["--plan", "--detailed-exitcode"], None), 0);
}

#[test]
fn apply_reload_keeps_reloading_for_every_change() {
    let (site, (a, b), before) = one_server_installed_then_a_second(Site::start("reload"));
    let output = site.run_ok();
    assert_says(&output, "reload haproxy: config sha256 changed to");
    assert_says(&output, "a reload because `haproxy.apply = \"reload\"`");
    assert_eq!(site.reloads_and_worker().0, before.0 + 1);
    site.assert_file_matches_haproxy("after a reload");

    // A booting server (rendered `disabled`) that becomes ready is in traffic after the reload:
    // the server state saved before it does not keep the maintenance the old file gave it.
    let c = loopback_backend(100_000);
    let three = [("i-a", a, None), ("i-b", b, None), ("i-c", c, None)];
    site.instances_pending(&three, &["i-c"]);
    site.run_ok();
    assert_eq!(
        site.running()["i-c"].1 & 0x01,
        0x01,
        "booting: in maintenance"
    );
    site.instances(&three);
    assert_says(&site.run_ok(), "reload haproxy: ");
    assert!(site.deployment.path("haproxy/server-state").exists());
    let running = site.running();
    assert_eq!(
        running.get("i-c").map(|server| server.1 & 0x23),
        Some(0),
        "ready: in traffic: {running:?}"
    );
}

/// Issue 27: after a load HAProxy failed (here a reload someone else asked for), the worker still
/// serving is not taken for an old worker finishing its connections (3.1+ lists it under `# old
/// workers`): a drain ends as soon as its server has no session left, and the server is then
/// terminated and removed, with no reload, on every version.
#[test]
fn a_drain_then_a_terminate_after_a_failed_reload() {
    let mut site = Site::start("runtime");
    let (a, b) = (loopback_backend(100_000), loopback_backend(100_000));
    let instance = |id: &str, port: u16| {
        serde_json::json!({"id": id, "address": "127.0.0.1", "port": port, "state": "running",
                           "tags": {"haproxy-autoscaler:pool": "web"}})
    };
    let provider = site.deployment.path("provider.json");
    std::fs::write(
        &provider,
        serde_json::json!([instance("local-1", a), instance("local-2", b)]).to_string(),
    )
    .unwrap();
    let pool = |bounds: &str| {
        fixture_exec_pool("ready_check = \"none\"")
            + "[pool.scaling]\n"
            + bounds
            + "\nwarmup_s = 0\ncooldown_s = 0\ndrain_s = 600\nscale_up_above = 20\nscale_down_below = 5\n"
    };
    site.deployment.pool_toml = pool("min = 2\nmax = 2");
    site.run_ok();
    site.wait_all_up();

    // A reload of a file HAProxy cannot load (a port taken), then the tool's file put back.
    let good = std::fs::read_to_string(site.deployment.haproxy_cfg()).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        site.deployment.haproxy_cfg(),
        format!(
            "{good}frontend taken\n    bind {}\n    default_backend web\n",
            busy.local_addr().unwrap()
        ),
    )
    .unwrap();
    site.haproxy.master("reload");
    site.haproxy.wait_for_master("[failed: 1]");
    std::fs::write(site.deployment.haproxy_cfg(), &good).unwrap();
    let before = site.reloads_and_worker();

    site.deployment.pool_toml = pool("min = 1\nmax = 1");
    let drained = site.run(&["-v"], None);
    assert_exit(&drained, 0);
    let drained = describe(&drained);
    assert_says(&drained, "drain server web/local-");
    // A drain ends early from the run after the second it started in.
    std::thread::sleep(Duration::from_millis(1100));
    let terminated = site.run(&["-v"], None);
    assert_exit(&terminated, 0);
    let terminated = describe(&terminated);
    assert_says(&terminated, "no session left");
    assert_says(&terminated, "terminate instance local-");
    assert!(!terminated.contains("reload haproxy"), "{terminated}");
    assert_eq!(
        site.reloads_and_worker(),
        before,
        "no reload since the failed one"
    );
    assert_eq!(site.running().len(), 1, "one server left");
    site.assert_file_matches_haproxy("after the terminate");
    let left: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&provider).unwrap()).unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert!(get(site.frontend).ends_with("ok"));
    drop(busy);
}

/// Issue 27: a server with a `cookie` joins through the runtime API where HAProxy accepts it
/// (3.0 and later, as `show info` says), and by a reload on 2.6, which refuses it.
#[test]
fn a_server_with_a_cookie_joins_without_a_reload_from_haproxy_3_0() {
    let mut site = Site::start("runtime");
    site.deployment.template = site
        .deployment
        .template
        .replace(
            "    balance roundrobin\n",
            "    balance roundrobin\n    cookie SRV insert indirect nocache\n",
        )
        .replace(
            "{{address}}:{{port}}",
            "{{address}}:{{port}} cookie {{name}}",
        );
    let (site, _, before) = one_server_installed_then_a_second(site);
    let output = site.run_ok();
    if haproxy_version() >= (3, 0) {
        assert_says(&output, "apply through the runtime API");
        assert_says(&output, " cookie i-b\n");
        assert_eq!(site.reloads_and_worker(), before, "no reload");
    } else {
        assert_says(
            &output,
            "has `cookie`, which `add server` does not accept on HAProxy 2.6",
        );
        assert_eq!(site.reloads_and_worker().0, before.0 + 1, "one reload");
    }
    site.assert_file_matches_haproxy("after the join");
    site.wait_all_up();
    assert!(get(site.frontend).ends_with("ok"));
}

/// Issue 27: a server with an agent check joins through the runtime API on every version, its
/// agent enabled by `enable agent` (a dynamic server's agent starts disabled, as its health check).
#[test]
fn a_server_with_an_agent_check_joins_with_its_agent_enabled() {
    let mut site = Site::start("runtime");
    let agent = loopback_backend(100_000);
    site.deployment.template = site.deployment.template.replace(
        "{{address}}:{{port}}",
        &format!("{{{{address}}}}:{{{{port}}}} agent-check agent-addr 127.0.0.1 agent-port {agent} agent-inter 1s"),
    );
    let (site, _, before) = one_server_installed_then_a_second(site);
    let output = site.run_ok();
    assert_says(&output, "apply through the runtime API");
    assert_says(&output, "\n    enable agent web/i-b\n");
    assert_eq!(site.reloads_and_worker(), before, "no reload");
    site.assert_file_matches_haproxy("after the join");
}

/// Issue 32: the operator's verbs through the real binary against a real HAProxy. Each acts on
/// HAProxy at once through the runtime API and is recorded in the state, and the runs keep it:
/// a server under maintenance stays out of traffic (rendered `disabled`), a protected one is
/// never the one a scale-down drains, a drained one is terminated once its drain is over; all
/// with no reload after the first install.
#[test]
fn the_operators_verbs_act_at_once_and_the_runs_keep_them() {
    let mut site = Site::start("runtime");
    let load = site.deployment.path("load");
    std::fs::write(&load, "50").unwrap();
    site.deployment.pool_toml = fixture_exec_pool("ready_check = \"none\"")
        + &format!(
            "[pool.scaling]\nmin = 1\nmax = 5\nscale_up_above = 100\nscale_down_below = 10\nmetric = \"command\"\nmetric_command = [\"cat\", \"{}\"]\nper_server = false\ncooldown_s = 0\nwarmup_s = 0\ndrain_s = 1\n",
            load.display()
        );
    let fleet: Vec<serde_json::Value> = ["i-1", "i-2", "i-3", "i-4"]
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "address": "127.0.0.1", "port": loopback_backend(100_000),
                               "tags": {"haproxy-autoscaler:pool": "web"}})
        })
        .collect();
    let provider = site.deployment.path("provider.json");
    std::fs::write(&provider, serde_json::to_string(&fleet).unwrap()).unwrap();
    site.run_ok();
    site.wait_all_up();
    let before = site.reloads_and_worker();
    let verb = |args: &[&str]| {
        let output = site.run(args, None);
        (
            output.status.code(),
            stdout(&output) + &super::super::util::stderr(&output),
        )
    };
    let admin = |server: &str| site.running()[server].1;
    let cfg = || std::fs::read_to_string(site.deployment.haproxy_cfg()).unwrap();

    let (code, said) = verb(&["maintenance", "web/i-3", "on"]);
    assert_eq!(code, Some(0), "{said}");
    assert_says(&said, "pool web: server i-3 is under maintenance");
    assert_says(&said, "(HAProxy: set server web/i-3 state maint)");
    assert_eq!(admin("i-3") & 0x01, 0x01, "in maintenance at once");
    site.run_ok();
    assert!(
        cfg().contains(" i-3 127.0.0.1:")
            && cfg()
                .lines()
                .any(|l| l.contains(" i-3 ") && l.ends_with(" disabled")),
        "{}",
        cfg()
    );
    assert_eq!(admin("i-3") & 0x01, 0x01, "a run keeps it in maintenance");
    let (code, said) = verb(&["maintenance", "web/i-3", "off"]);
    assert_eq!(code, Some(0), "{said}");
    assert_says(&said, "(HAProxy: set server web/i-3 state ready)");
    assert_eq!(admin("i-3") & 0x01, 0, "back in traffic");
    site.run_ok();
    assert!(!cfg().contains("disabled"), "{}", cfg());

    // Protected: the scale-down drains the next one in line, not it.
    let (code, said) = verb(&["protect", "web/i-1", "on"]);
    assert_eq!(code, Some(0), "{said}");
    assert_says(&said, "pool web: server i-1 is protected");
    let (code, said) = verb(&["drain", "web/i-1"]);
    assert_eq!(code, Some(2), "{said}");
    assert_says(
        &said,
        "may not be drained: i-1 is protected (`protect web/i-1 off` lifts it)",
    );
    std::fs::write(&load, "5").unwrap();
    let down = site.run_ok();
    assert_says(&down, "drain server web/i-2");
    assert!(!down.contains("web/i-1"), "{down}");
    std::fs::write(&load, "50").unwrap();

    // Drained by hand: at once in HAProxy, then terminated by the runs once the drain is over.
    let (code, said) = verb(&["drain", "web/i-4"]);
    assert_eq!(code, Some(0), "{said}");
    assert_says(&said, "(HAProxy: set server web/i-4 state drain)");
    assert_eq!(admin("i-4") & 0x08, 0x08, "draining at once");
    std::thread::sleep(Duration::from_millis(1100));
    let ended = site.run_ok();
    assert_says(&ended, "terminate instance i-4");
    let left: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&provider).unwrap()).unwrap();
    let ids: Vec<&str> = left.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["i-1", "i-3"], "i-2 and i-4 terminated");

    for (args, words) in [
        (
            &["drain", "web/nope"][..],
            "pool `web` has no server `nope`",
        ),
        (
            &["drain", "api/i-1"][..],
            "the config has no pool `api`; its pools: web",
        ),
        (
            &["maintenance", "i-1", "on"][..],
            "`i-1` is not POOL/SERVER",
        ),
    ] {
        let (code, said) = verb(args);
        assert_eq!(code, Some(2), "{args:?}: {said}");
        assert_says(&said, words);
    }
    assert_eq!(
        site.reloads_and_worker(),
        before,
        "no reload after the first install"
    );
}

/// A backend that answers each request after `delay`, one thread per connection.
fn slow_backend(delay: Duration) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                if stream.read(&mut buffer).unwrap_or(0) == 0 {
                    return; // a health check's connection
                }
                std::thread::sleep(delay);
                let _ = stream.write_all(
                    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

/// Issue 32: `hosts remove --drain` drains the host's server through the runtime API, waits out
/// the request in flight on it (which succeeds), and only then removes the host; the next run
/// takes the server out without a reload. Without a stats socket it refuses and removes nothing.
#[test]
fn hosts_remove_drain_waits_out_the_sessions_before_removing() {
    let mut site = Site::start("runtime");
    site.deployment.pool_toml =
        "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"static\"\n".to_owned();
    site.deployment.write();
    let slow = slow_backend(Duration::from_millis(1500));
    let fast = loopback_backend(100_000);
    for (name, port) in [("slow", slow), ("fast", fast)] {
        let added = site.run(&["hosts", "add", name, &format!("127.0.0.1:{port}")], None);
        assert_exit(&added, 0);
    }
    site.run_ok();
    site.wait_all_up();
    let before = site.reloads_and_worker();
    // A request in flight on `slow` (round robin: a few requests make sure one lands there).
    let frontend = site.frontend;
    let clients: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(frontend)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let removed = site.run(&["hosts", "remove", "slow", "--drain"], None);
    assert_exit(&removed, 0);
    let said = stdout(&removed);
    assert_says(&said, "drained server web/slow: no session left after ");
    assert!(
        !said.contains("after 0 s"),
        "it waited for the request in flight: {said}"
    );
    assert_says(&said, "removed host slow from pool web");
    for client in clients {
        assert!(
            client.join().unwrap().ends_with("ok"),
            "a request in flight failed"
        );
    }
    let left = site.run_ok();
    assert_says(&left, "del server web/slow");
    assert_eq!(site.reloads_and_worker(), before, "no reload");

    // No stats socket: refused, nothing removed.
    site.deployment.haproxy_toml = site
        .deployment
        .haproxy_toml
        .lines()
        .filter(|line| !line.starts_with("stats_socket"))
        .fold(String::new(), |toml, line| toml + line + "\n");
    let refused = site.run(&["hosts", "remove", "fast", "--drain"], None);
    assert_exit(&refused, 1);
    assert!(
        super::super::util::stderr(&refused)
            .contains("cannot drain host `fast` of pool `web`: the runtime API needs `[haproxy] stats_socket`; it was not removed"),
        "{}",
        describe(&refused)
    );
    let listed = stdout(&site.run(&["hosts", "list"], None));
    assert_says(&listed, "fast");
}
