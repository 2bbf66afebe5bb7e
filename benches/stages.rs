//! The pure stages of a run at 10 to 100,000 servers, then a table of the median time of each
//! stage per size and its growth per ×10 servers (1 is constant, 10 is linear, 100 quadratic).
//!
//!     cargo bench --bench stages                      # every size (~10 minutes)
//!     BENCH_SIZES=1000,10000 cargo bench --bench stages
//!
//! The inputs are recorded output repeated (see `haproxy_autoscaler::testing::bench`).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion};
use haproxy_autoscaler::testing::bench::Fleet;

/// The binary's allocator (src/main.rs), so that the stages cost what they cost in a run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STAGES: [(&str, &str); 10] = [
    ("show_stat", "parse HAProxy's `show stat`"),
    ("exec_json", "parse the exec provider's JSON"),
    (
        "ec2_pages",
        "EC2: DescribeInstances pages of 1,000, SDK + convert",
    ),
    ("decide", "decide: scale and sort into servers"),
    ("render", "render the template"),
    ("plan", "the whole core: decide, render, compare"),
    ("sha256", "hash the rendered config"),
    ("diff", "diff installed vs rendered (one server moved)"),
    (
        "state_save_load",
        "state: save and load, full sample history",
    ),
    ("state_bytes", "(state file size, bytes)"),
];

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES").ok().map_or_else(
        || vec![10, 100, 1_000, 10_000, 100_000],
        |sizes| {
            sizes
                .split(',')
                .map(|size| size.trim().parse().expect("BENCH_SIZES: numbers"))
                .collect()
        },
    )
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sizes = sizes();
    let mut state_bytes = Vec::new();
    for &servers in &sizes {
        eprintln!("building the inputs for {servers} servers");
        let fleet = Fleet::new(servers);
        let id = |name: &str| BenchmarkId::new(name, servers);
        let mut group = criterion.benchmark_group(format!("{servers}"));
        group.bench_function(id("show_stat"), |b| b.iter(|| fleet.parse_show_stat()));
        group.bench_function(id("exec_json"), |b| b.iter(|| fleet.parse_exec_json()));
        let endpoint = fleet.serve_ec2();
        group.bench_function(id("ec2_pages"), |b| {
            b.iter(|| runtime.block_on(fleet.ec2_list(&endpoint)));
        });
        let observed = fleet.observations();
        group.bench_function(id("decide"), |b| b.iter(|| fleet.decide(&observed)));
        let decided = fleet.decide(&observed);
        group.bench_function(id("render"), |b| {
            b.iter_batched(
                || decided.clone(),
                |mut pools| fleet.render(&mut pools),
                BatchSize::LargeInput,
            );
        });
        group.bench_function(id("plan"), |b| b.iter(|| fleet.plan(&observed)));
        group.bench_function(id("sha256"), |b| {
            b.iter(|| haproxy_autoscaler::surface::model::sha256_hex(fleet.installed.as_bytes()));
        });
        group.bench_function(id("diff"), |b| {
            b.iter(|| {
                haproxy_autoscaler::surface::decide::diff::unified(
                    &fleet.installed_one_off,
                    &fleet.installed,
                    "haproxy.cfg",
                )
            });
        });
        group.bench_function(id("state_save_load"), |b| {
            b.iter(|| runtime.block_on(fleet.save_and_load()));
        });
        group.finish();
        state_bytes.push(runtime.block_on(fleet.save_and_load()));
    }
    criterion.final_summary();
    summary(&sizes, &state_bytes);
}

/// Criterion's median estimate of one benchmark, in seconds.
fn median(servers: usize, stage: &str) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME").map_or_else(
        || {
            PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
                .join("criterion")
        },
        PathBuf::from,
    );
    let path = home
        .join(servers.to_string())
        .join(stage)
        .join(servers.to_string())
        .join("new/estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(estimates["median"]["point_estimate"].as_f64()? / 1e9)
}

fn shown(seconds: f64) -> String {
    match seconds {
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 1e-3 => format!("{:.2} ms", s * 1e3),
        s => format!("{:.1} µs", s * 1e6),
    }
}

fn summary(sizes: &[usize], state_bytes: &[usize]) {
    println!();
    println!(
        "median per stage ({} cores); growth = time at 10x the servers / time",
        { std::thread::available_parallelism().map_or(1, std::num::NonZero::get) }
    );
    print!("{:<52}", "stage");
    for servers in sizes {
        print!("{servers:>12}");
    }
    println!("   growth per x10");
    for (stage, label) in STAGES {
        print!("{label:<52}");
        let figures: Vec<Option<f64>> = if stage == "state_bytes" {
            state_bytes
                .iter()
                .map(|&bytes| Some(bytes as f64))
                .collect()
        } else {
            sizes
                .iter()
                .map(|&servers| median(servers, stage))
                .collect()
        };
        for figure in &figures {
            match figure {
                Some(bytes) if stage == "state_bytes" => print!("{:>12}", *bytes as u64),
                Some(seconds) => print!("{:>12}", shown(*seconds)),
                None => print!("{:>12}", "-"),
            }
        }
        let growth: Vec<String> = figures
            .windows(2)
            .zip(sizes.windows(2))
            .filter(|(_, sizes)| sizes[1] == sizes[0] * 10)
            .map(|(pair, _)| match pair {
                [Some(a), Some(b)] if *a > 0.0 => format!("{:.1}", b / a),
                _ => "-".to_owned(),
            })
            .collect();
        println!("   {}", growth.join(" "));
    }
}
