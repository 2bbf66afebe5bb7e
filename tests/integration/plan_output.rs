//! Snapshots of what `--plan` prints, in text and in JSON, for a discovery run and a scaling
//! run through the real binary (exec provider, a fake admin socket: no cloud). Temporary paths,
//! digests, tokens and times are redacted; everything else is pinned, so a change in wording or
//! shape shows up in review (`INSTA_UPDATE=always cargo test`, then read the diff).

use haproxy_autoscaler::testing::FakeAdminSocket;

use super::util::{Deployment, assert_exit, fixture_exec_pool, stdout};

fn exec_deployment(pool_extra: &str) -> Deployment {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    deployment.pool_toml = fixture_exec_pool("ready_check = \"none\"") + pool_extra;
    deployment
}

/// `text` with the deployment's folder as `[DIR]` and every run of ten or more hex digits (a
/// sha256, a launch token's digest, a Unix time) as `[HEX]`.
fn redacted(text: &str, deployment: &Deployment) -> String {
    let text = text.replace(&deployment.path("").display().to_string(), "[DIR]/");
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 10 { "[HEX]" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn plan(deployment: &Deployment, provider_state: &str, json: bool) -> String {
    let state = deployment.path("provider.json");
    std::fs::write(&state, provider_state).unwrap();
    let mut command = deployment.command();
    command.env("EXEC_PROVIDER_STATE", &state).arg("--plan");
    if json {
        command.args(["--format", "json"]);
    }
    let output = command.output().unwrap();
    assert_exit(&output, 0);
    redacted(&stdout(&output), deployment)
}

const DISCOVERED: &str = r#"[
  {"id": "local-1", "address": "127.0.0.1", "port": 9001},
  {"id": "local-2", "address": "127.0.0.1", "port": 9002, "state": "pending"},
  {"id": "local-3", "address": "a b", "port": 9003}
]"#;

#[test]
fn plan_of_a_discovery_run_in_text_and_json() {
    let deployment = exec_deployment("");
    deployment.write();
    insta::assert_snapshot!("discovery_text", plan(&deployment, DISCOVERED, false));
    insta::assert_snapshot!("discovery_json", plan(&deployment, DISCOVERED, true));
}

#[test]
fn plan_of_a_scaling_run_in_text_and_json() {
    let mut deployment = exec_deployment(
        "[pool.scaling]\nmin = 3\nmax = 5\nwarmup_s = 0\ncooldown_s = 0\nscale_up_above = 20\nscale_down_below = 2\n",
    );
    let socket = deployment.path("admin.sock");
    deployment
        .haproxy_toml
        .push_str(&format!("stats_socket = \"{}\"\n", socket.display()));
    deployment.write();
    let haproxy = FakeAdminSocket::start(&socket);
    haproxy.set_servers(&[("local-1", 3, 500), ("local-2", 1, 200)]);
    let two = r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001, "tags": {"haproxy-autoscaler:pool": "web"}},
                  {"id": "local-2", "address": "127.0.0.1", "port": 9002, "tags": {"haproxy-autoscaler:pool": "web"}}]"#;
    insta::assert_snapshot!("scaling_text", plan(&deployment, two, false));
    insta::assert_snapshot!("scaling_json", plan(&deployment, two, true));
}
