//! The exec provider through the real binary: no cloud, no AWS configuration needed.

use super::util::{Deployment, assert_exit, describe, stderr, stdout};

fn exec_deployment() -> Deployment {
    let mut deployment = Deployment::new("http://127.0.0.1:9");
    let provider = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/exec-provider.py"
    );
    deployment.pool_toml = format!(
        "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"exec\"\n[pool.exec]\nlist = [\"python3\", \"{provider}\", \"list\"]\nlaunch = [\"python3\", \"{provider}\", \"launch\"]\nterminate = [\"python3\", \"{provider}\", \"terminate\"]\n"
    );
    deployment
}

#[test]
fn exec_pools_render_what_the_list_command_prints_without_any_aws_setup() {
    let deployment = exec_deployment();
    let state = deployment.path("provider.json");
    std::fs::write(
        &state,
        r#"[{"id": "local-1", "address": "127.0.0.1", "port": 9001}, {"id": "local-2", "address": "127.0.0.1", "port": 9002, "state": "pending"}]"#,
    )
    .unwrap();
    deployment.write();
    // No [aws] region and no credentials: an exec-only config must not need them.
    let config = std::fs::read_to_string(deployment.config_path())
        .unwrap()
        .replace("region = \"us-east-1\"\n", "");
    std::fs::write(deployment.config_path(), config).unwrap();
    let run = || {
        deployment
            .command()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("EXEC_PROVIDER_STATE", &state)
            .output()
            .unwrap()
    };
    let output = run();
    assert_exit(&output, 0);
    assert_eq!(deployment.servers(), ["local-1", "local-2"]);
    let installed = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(
        installed.contains("server local-1 127.0.0.1:9001\n"),
        "{installed}"
    );
    assert!(
        stdout(&output).contains(
            "add server web/local-2 at 127.0.0.1:9002: instance discovered (pending), booting"
        ),
        "{}",
        describe(&output)
    );

    // Output that is not the documented JSON: a clear error naming the command, nothing touched.
    let before = std::fs::read(deployment.haproxy_cfg()).unwrap();
    let broken = deployment
        .command()
        .env("EXEC_PROVIDER_STATE", &state)
        .env("EXEC_PROVIDER_BROKEN", "1")
        .output()
        .unwrap();
    assert_exit(&broken, 1);
    assert!(
        stderr(&broken)
            .contains("exec-provider.py list` printed output that is not the documented JSON"),
        "{}",
        describe(&broken)
    );
    assert_eq!(std::fs::read(deployment.haproxy_cfg()).unwrap(), before);
}

#[test]
fn the_openstack_example_speaks_the_exec_json() {
    let deployment = Deployment::new("http://127.0.0.1:9");
    let bin = deployment.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-openstack"),
        bin.join("openstack"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = deployment.path("openstack.log");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/openstack-provider.py"
    );

    // Through the binary: only this pool's ACTIVE and BUILD servers, with their addresses.
    let mut deployment = deployment;
    deployment.pool_toml = format!(
        "[[pool]]\nname = \"web\"\nport = 8080\nprovider = \"exec\"\n[pool.exec]\nlist = [\"python3\", \"{example}\", \"list\", \"web\"]\n"
    );
    deployment.write();
    let output = deployment
        .command()
        .env("PATH", &path)
        .env("FAKE_OPENSTACK_LOG", &log)
        .output()
        .unwrap();
    assert_exit(&output, 0);
    assert_eq!(
        deployment.servers(),
        ["os-1", "os-2"],
        "{}",
        describe(&output)
    );
    let installed = std::fs::read_to_string(deployment.haproxy_cfg()).unwrap();
    assert!(
        installed.contains("server os-1 127.0.0.1:8080\n")
            && installed.contains("server os-2 127.0.0.2:8080\n"),
        "{installed}"
    );

    // Launch: servers already carrying the token count; the rest are created with the tags.
    let launch = std::process::Command::new("python3")
        .args([example, "launch"])
        .env("PATH", &path)
        .env("FAKE_OPENSTACK_LOG", &log)
        .env("OPENSTACK_IMAGE", "img")
        .env("OPENSTACK_FLAVOR", "m1.small")
        .env("OPENSTACK_NETWORK", "private")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(
                br#"{"pool": "web", "count": 2, "token": "hxa-t", "tags": {"haproxy-autoscaler:pool": "web", "haproxy-autoscaler:launch-token": "hxa-t"}}"#,
            )?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(launch.status.success());
    let ids: Vec<String> = serde_json::from_slice(&launch.stdout).expect("a JSON array of ids");
    assert_eq!(ids, ["os-2", "os-new-web-hxa-t-1"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    let create = calls
        .lines()
        .find(|line| line.contains("\"create\""))
        .expect("one create");
    assert!(
        create.contains("\"--property\", \"haproxy-autoscaler:launch-token=hxa-t\""),
        "{create}"
    );
    assert_eq!(
        calls
            .lines()
            .filter(|line| line.contains("\"create\""))
            .count(),
        1
    );
}
