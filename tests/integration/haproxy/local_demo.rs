//! The local end-to-end demo (examples/local/demo.py) in a shorter form: real HAProxy in
//! master-worker mode, loopback backends launched and terminated through the exec provider, the
//! binary run every 1.5 s under keep-alive load that ramps up and down. Asserts what the demo
//! promises: it scales up and down, changes servers under load without reloading, keeps not-ready backends out of traffic,
//! drains servers that have requests in flight, and no request fails.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{haproxy, path_with_haproxy};

fn run_demo(work: &Path) -> Value {
    let haproxy = haproxy();
    let path = std::env::join_paths(
        std::iter::once(haproxy.parent().unwrap().to_owned())
            .chain(std::env::split_paths(&path_with_haproxy())),
    )
    .unwrap();
    let summary = work.join("summary.json");
    let output = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/local/demo.py"
        ))
        .args(["--binary", env!("CARGO_BIN_EXE_haproxy-autoscaler")])
        .args([
            "--phase",
            "10",
            "--period",
            "1.5",
            "--drain-s",
            "5",
            // Twice the demo's slow (1.5 s) clients: a drain then finds a request in flight on
            // the server it drains more surely (the fresh-clone CI once drained four servers
            // whose sessions were all idle keep-alive connections).
            "--slow-clients",
            "12",
            "--quiet",
        ])
        .arg("--summary")
        .arg(&summary)
        .arg("--work")
        .arg(work.join("demo"))
        .env("PATH", path)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&summary).unwrap_or_else(|error| {
        panic!(
            "no summary ({error}); demo exit {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// One backend's request log: (start, end, path, status).
fn backend_log(path: &Path) -> Vec<(f64, f64, String, u16)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (
                fields[0].parse().unwrap(),
                fields[1].parse().unwrap(),
                fields[2].to_owned(),
                fields[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn scales_up_and_down_under_keep_alive_load_without_failing_a_request() {
    let scratch = tempfile::tempdir().unwrap();
    let summary = run_demo(scratch.path());
    let brief = {
        let mut brief = summary.clone();
        brief.as_object_mut().unwrap().remove("runs");
        brief
    };
    let runs = summary["runs"].as_array().unwrap();
    let lines: Vec<(f64, &str)> = runs
        .iter()
        .flat_map(|run| {
            let at = run["at"].as_f64().unwrap();
            run["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |line| (at, line.as_str().unwrap()))
        })
        .collect();

    assert_eq!(summary["failed"], 0, "{brief:#}");
    assert_eq!(summary["failed_runs"], 0, "{brief:#}");
    assert!(summary["requests"].as_u64().unwrap() > 1000, "{brief:#}");

    // Up and down.
    assert!(
        summary["most_servers_in_service"].as_u64().unwrap() >= 3,
        "{brief:#}"
    );
    assert!(
        summary["drains"].as_array().unwrap().len() >= 2,
        "{brief:#}"
    );
    assert!(summary["terminates"].as_u64().unwrap() >= 1, "{brief:#}");

    // Servers join and leave under load through the runtime API (the default), with no reload:
    // neither the tool's reports nor HAProxy's own count of reloads. Every run in `runs` after
    // the first few ran with the load on, and the summary counts only those.
    assert_eq!(summary["apply"], "runtime", "{brief:#}");
    assert!(
        summary["runtime_applies"].as_u64().unwrap() >= 5,
        "{brief:#}"
    );
    assert_eq!(summary["reloads"], 0, "{brief:#}");
    assert_eq!(summary["master_reloads"], 0, "{brief:#}");

    // Drained servers had requests in flight (the tool reports HAProxy's current sessions), and
    // their backends finished requests after the drain began.
    let pool = PathBuf::from(summary["work"].as_str().unwrap()).join("pool");
    let mut drained_with_requests = 0;
    for &(at, line) in lines
        .iter()
        .filter(|(_, line)| line.starts_with("drain server"))
    {
        let id = line["drain server web/".len()..].split(':').next().unwrap();
        let sessions: u64 = line
            .strip_suffix(" session(s))")
            .and_then(|head| head.rsplit('(').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no session count in {line:?}"));
        let finished_after = backend_log(&pool.join(format!("{id}.log")))
            .iter()
            .filter(|(start, end, path, status)| {
                *start < at && *end > at && path != "/health" && *status == 200
            })
            .count();
        if sessions > 0 && finished_after > 0 {
            drained_with_requests += 1;
        }
    }
    assert!(
        drained_with_requests >= 1,
        "no drain with requests in flight: {brief:#}"
    );

    // Backends answer 503 for their first seconds: the readiness probe saw it, clients never did.
    let mut launched_during_load = 0;
    for entry in std::fs::read_dir(&pool).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "log") {
            continue;
        }
        let log = backend_log(&path);
        for (_, _, request, status) in &log {
            assert!(
                request == "/health" || *status == 200,
                "{}: a client request was answered {status} (not ready yet): {request}",
                path.display()
            );
        }
        let not_ready = log
            .iter()
            .filter(|(_, _, request, status)| request == "/health" && *status == 503)
            .count();
        let served = log.iter().filter(|(_, _, request, _)| request != "/health");
        if not_ready > 0 && served.count() > 0 {
            launched_during_load += 1;
        }
    }
    assert!(
        launched_during_load >= 2,
        "the 503 start-up window was never exercised: {brief:#}"
    );
}
