//! `simulate` through the real binary: the figures in JSON under their documented names, a
//! plot, and clear errors for a bad trace or a pool that does not scale.

use super::util::{Deployment, assert_exit, exec_pool, stderr, stdout};

fn site(scaling: &str) -> Deployment {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    deployment
        .haproxy_toml
        .push_str("stats_socket = \"/run/haproxy/admin.sock\"\n");
    deployment.pool_toml =
        exec_pool("web", 80, "", &["true"], Some((&["true"], &["true"]))) + scaling;
    deployment.write();
    deployment
}

fn write_trace(deployment: &Deployment, text: &str) -> String {
    let path = deployment.path("trace.csv");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `haproxy-autoscaler simulate ARGS` with `site`'s config.
fn simulate(site: &Deployment, args: &[&str]) -> std::process::Output {
    site.command().arg("simulate").args(args).output().unwrap()
}

fn ramp() -> String {
    let mut text = String::from("t_seconds,load\n");
    for minute in 0..240 {
        let load = if minute < 120 {
            minute * 5
        } else {
            (240 - minute) * 5
        };
        text.push_str(&format!("{},{load}\n", minute * 60));
    }
    text
}

#[test]
fn simulate_prints_the_documented_figures_and_draws_the_plot() {
    let deployment = site(
        "[pool.scaling]\nmin = 1\nmax = 40\nmetric = \"request_rate\"\ntarget = 70\nstep_up = 20\nstep_down = 20\n",
    );
    let trace = write_trace(&deployment, &ramp());
    let plot = deployment.path("plot.svg");
    let plot_path = plot.display().to_string();
    let output = simulate(
        &deployment,
        &[
            "--trace",
            &trace,
            "--capacity",
            "100",
            "--format",
            "json",
            "--plot",
            &plot_path,
        ],
    );
    assert_exit(&output, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for key in [
        "requests_total",
        "requests_unserved",
        "unserved_pct",
        "overloaded_minutes",
        "instance_hours",
        "oracle_instance_hours",
        "cost_ratio",
        "foresight_instance_hours",
        "foresight_cost_ratio",
        "scale_ups",
        "scale_downs",
        "actions_per_day",
        "reversals",
    ] {
        assert!(report.get(key).is_some(), "no `{key}` in {report}");
    }
    assert_eq!(report["policy"]["policy"], "peak");
    assert_eq!(
        (&report["forecast"], &report["saturation_queue"]),
        (&serde_json::json!("off"), &serde_json::json!(1.0)),
        "{report}"
    );
    // Boots cost: the foresight limit is never below the no-boot oracle.
    let foresight = report["foresight_instance_hours"].as_f64().unwrap();
    assert!(
        foresight >= report["oracle_instance_hours"].as_f64().unwrap(),
        "{report}"
    );
    assert!(report["scale_ups"].as_u64().unwrap() > 0, "{report}");
    assert!(report["scale_downs"].as_u64().unwrap() > 0, "{report}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("offered load"),
        "{}",
        &svg[..200.min(svg.len())]
    );

    // The same run twice gives the same figures.
    let again = simulate(
        &deployment,
        &["--trace", &trace, "--capacity", "100", "--format", "json"],
    );
    assert_eq!(stdout(&again), stdout(&output));
}

#[test]
fn a_bad_trace_or_a_pool_without_scaling_is_a_usage_error() {
    let deployment = site("[pool.scaling]\nmax = 4\ntarget = 70\n");
    let trace = write_trace(&deployment, "t_seconds,load\n0,1\n60,2\n180,3\n");
    let output = simulate(&deployment, &["--trace", &trace]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("trace.csv`: line 4: t_seconds 180 where 120 was expected"),
        "{}",
        stderr(&output)
    );

    let discovery = site("");
    let trace = write_trace(&discovery, &ramp());
    let output = simulate(&discovery, &["--trace", &trace]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("pool `web` has no `[pool.scaling]`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn what_the_simulation_cannot_model_is_said() {
    // A target the saturated metric can never pass: a warning, and the figures still come.
    let pool = site("[pool.scaling]\nmax = 40\nmetric = \"request_rate\"\ntarget = 95\n");
    let trace = write_trace(&pool, &ramp());
    let output = simulate(&pool, &["--trace", &trace, "--capacity", "100"]);
    assert_exit(&output, 0);
    assert!(
        stderr(&output).contains("warning: the metric can never scale the pool up"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("unserved"), "{}", stdout(&output));

    // Response times are not simulated.
    let pool = site(
        "[pool.scaling]\nmax = 40\nmetric = \"response_time_ms\"\nscale_up_above = 200\nscale_down_below = 50\n",
    );
    let trace = write_trace(&pool, &ramp());
    let output = simulate(&pool, &["--trace", &trace]);
    assert_exit(&output, 2);
    assert!(stderr(&output).contains("`response_time_ms` is not simulated"));

    // A trace too long to hold in memory is refused, not an allocation failure.
    let pool = site("[pool.scaling]\nmax = 4\ntarget = 70\n");
    let trace = write_trace(&pool, "t_seconds,load\n0,1\n1000000000000,2\n");
    let output = simulate(&pool, &["--trace", &trace]);
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("more than the 10000000 simulated"),
        "{}",
        stderr(&output)
    );
}

/// Issue 29, class 1: `--plot` never overwrites an input (the trace, the config) and never
/// writes through what is not a regular file (a FIFO would hang the run).
#[test]
fn the_plot_never_overwrites_an_input_or_a_fifo() {
    let deployment =
        site("[pool.scaling]\nmin = 1\nmax = 10\nmetric = \"request_rate\"\ntarget = 70\n");
    let trace = write_trace(&deployment, &ramp());
    let config = deployment.config_path().display().to_string();
    let link = deployment.path("link.svg");
    std::os::unix::fs::symlink(&trace, &link).unwrap();
    let link = link.display().to_string();
    for (plot, what) in [
        (&trace, "the trace"),
        (&config, "the config file"),
        (&link, "the trace"),
    ] {
        let before = std::fs::read(plot).unwrap();
        let output = simulate(&deployment, &["--trace", &trace, "--plot", plot]);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(&format!("is {what}: the plot would overwrite it")),
            "{}",
            stderr(&output)
        );
        assert_eq!(std::fs::read(plot).unwrap(), before, "{plot}");
    }
    let fifo = deployment.path("plot.svg");
    haproxy_autoscaler::testing::fifo(&fifo);
    let output = simulate(
        &deployment,
        &["--trace", &trace, "--plot", &fifo.display().to_string()],
    );
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("is not a regular file"),
        "{}",
        stderr(&output)
    );
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind));
    // With --format json, stdout is one document: the error, not the figures and then the error
    // (found by a fresh-eyes trial).
    let output = simulate(
        &deployment,
        &[
            "--trace",
            &trace,
            "--plot",
            &fifo.display().to_string(),
            "--format",
            "json",
        ],
    );
    assert_exit(&output, 1);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stdout)));
    assert!(
        document["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("plot")),
        "{document}"
    );
}

/// Issue 32: the sample traces ship with the repository, with their licences, and the
/// documented example runs on them from a fresh clone: every trace simulates, each summary
/// names its file, intervals and days.
#[test]
fn the_shipped_traces_simulate_from_a_fresh_clone() {
    let root = env!("CARGO_MANIFEST_DIR");
    // Each scaled so that its peak needs 50 servers of 100 req/s, as the documented example.
    for (trace, scale, summary) in [
        (
            "nasa_jul95.csv",
            "740.74",
            "39692 intervals of 60 s (27.6 days)",
        ),
        (
            "worldcup98-may-june.csv",
            "1.775",
            "79350 intervals of 60 s (55.1 days)",
        ),
        (
            "nab_aws_elb_8c0756.csv",
            "2283",
            "4040 intervals of 300 s (14.0 days)",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_haproxy-autoscaler"))
            .current_dir(root)
            .args([
                "simulate",
                "--config",
                "examples/simulate/config.toml",
                "--trace",
            ])
            .arg(format!("examples/traces/{trace}"))
            .args(["--scale", scale, "--capacity", "100"])
            .output()
            .unwrap();
        assert_exit(&output, 0);
        let first = stdout(&output)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            first,
            format!("pool web (policy peak) on examples/traces/{trace}: {summary}"),
            "{}",
            stderr(&output)
        );
    }
    for licence in ["WorldCup.html", "NASA-HTTP.html", "NAB-LICENSE.txt"] {
        let path = std::path::Path::new(root)
            .join("examples/traces/licenses")
            .join(licence);
        assert!(path.is_file(), "{} travels with the traces", path.display());
    }
}
