//! Issue 31: the forecast through the real binary. With `forecast = "observe"` over a state
//! holding eight days of the pool's load, `--plan` shows the forecast and its error, in text and
//! JSON, and decides exactly what it decides with the forecast off.

use haproxy_autoscaler::testing::FakeAdminSocket;
use serde_json::{Value, json};

use super::util::{Deployment, assert_exit, fixture_exec_pool, stdout};

const DAY: i64 = 86_400;

const TWO: &str = r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001, "tags": {"haproxy-autoscaler:pool": "web"}},
                     {"id": "local-2", "address": "127.0.0.1", "port": 9002, "tags": {"haproxy-autoscaler:pool": "web"}}]"#;

fn deployment(forecast: &str) -> (Deployment, FakeAdminSocket) {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    deployment.pool_toml = fixture_exec_pool("ready_check = \"none\"")
        + &format!(
            "[pool.scaling]\nmin = 2\nmax = 10\nwarmup_s = 0\ncooldown_s = 0\nscale_up_above = 20\nscale_down_below = 2\nforecast = \"{forecast}\"\n"
        );
    let socket = deployment.path("admin.sock");
    deployment
        .haproxy_toml
        .push_str(&format!("stats_socket = \"{}\"\n", socket.display()));
    deployment.write();
    std::fs::write(deployment.path("provider.json"), TWO).unwrap();
    let haproxy = FakeAdminSocket::start(&socket);
    haproxy.set_servers(&[("local-1", 3, 500), ("local-2", 1, 200)]);
    (deployment, haproxy)
}

fn run(deployment: &Deployment, args: &[&str]) -> String {
    let mut command = deployment.command();
    command
        .env("EXEC_PROVIDER_STATE", deployment.path("provider.json"))
        .args(args);
    let output = command.output().unwrap();
    assert_exit(&output, 0);
    stdout(&output)
}

/// Eight days of a pool load of 30 a minute apart up to now, with a daily spike to 100 three
/// minutes ahead of now's time of day; each day's forecast 10 % high.
fn history(now: i64) -> Value {
    let points: Vec<Value> = (1..=8 * 1_440)
        .map(|i| now - 8 * DAY + i * 60 - 60)
        .filter(|at| *at < now)
        .map(|at| {
            let spike = (at - now - 180).rem_euclid(DAY) < 60;
            json!({"at": at, "load": if spike { 100.0 } else { 30.0 }, "forecast": [33.0, 60]})
        })
        .collect();
    Value::Array(points)
}

/// Pool `web` in a `--plan --format json` document.
fn pool_web(plan: &Value) -> &Value {
    plan["plan"]["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pool| pool["name"] == "web")
        .unwrap()
}

#[test]
fn observe_shows_the_forecast_and_its_error_and_changes_nothing() {
    let (observing, _haproxy) = deployment("observe");
    // A first real run makes the state file; then it holds eight days of history.
    run(&observing, &[]);
    let state_path = observing.state_path();
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    state["pools"]["web"]["load_history"] = history(now);
    let seeded = serde_json::to_string_pretty(&state).unwrap();
    std::fs::write(&state_path, &seeded).unwrap();

    let text = run(&observing, &["--plan"]);
    let line = text
        .lines()
        .find(|line| line.starts_with("pool web: forecast (observed only): load "))
        .unwrap_or_else(|| panic!("no forecast line in\n{text}"));
    assert!(
        line.contains("in 180 s (from 7 day(s))")
            && line.contains("% mean error over the last day"),
        "{line}"
    );
    let plan: Value =
        serde_json::from_str(&run(&observing, &["--plan", "--format", "json"])).unwrap();
    let web = pool_web(&plan);
    let forecast = &web["scale"]["forecast"];
    assert_eq!(forecast["mode"], "observe", "{web}");
    assert_eq!(forecast["days"], 7, "{forecast}");
    let error = forecast["error_pct"].as_f64().unwrap();
    assert!((5.0..15.0).contains(&error), "{forecast}");
    assert!(forecast["load"].as_f64().unwrap() > 30.0, "{forecast}");
    // `--plan` wrote nothing.
    assert_eq!(std::fs::read_to_string(&state_path).unwrap(), seeded);
    // `status` scores the forecasts the state holds.
    let mut status = observing.command();
    status.arg("status");
    let status = status.output().unwrap();
    let said = stdout(&status);
    assert!(
        said.contains("forecast error 10.0 % over the last day"),
        "{said}"
    );

    // The same facts with the forecast off: the same decision and the same actions.
    let (off, _other) = deployment("off");
    run(&off, &[]);
    std::fs::write(
        off.state_path(),
        seeded.replace(
            &observing.path("").display().to_string(),
            &off.path("").display().to_string(),
        ),
    )
    .unwrap();
    let plan_off: Value =
        serde_json::from_str(&run(&off, &["--plan", "--format", "json"])).unwrap();
    let web_off = pool_web(&plan_off);
    assert!(web_off["scale"].get("forecast").is_none(), "{web_off}");
    for key in ["current", "desired", "min", "max"] {
        assert_eq!(
            web["scale"]["decision"][key], web_off["scale"]["decision"][key],
            "{key}"
        );
    }
    assert_eq!(
        plan["plan"]["actions"].as_array().map(Vec::len),
        plan_off["plan"]["actions"].as_array().map(Vec::len)
    );
}
