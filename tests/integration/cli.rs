//! The command line without a cloud: usage, bad config and bad templates fail before anything.

use super::util::{Deployment, assert_exit, describe, stderr};

fn deployment() -> Deployment {
    // Nothing listens here; these runs must stop before any cloud call.
    Deployment::new("http://127.0.0.1:9")
}

#[test]
fn help_is_short_and_names_the_exit_codes() {
    let output = deployment()
        .command()
        .env_remove("HAPROXY_AUTOSCALER_CONFIG")
        .arg("--help")
        .output()
        .unwrap();
    assert_exit(&output, 0);
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
}

#[test]
fn invalid_config_exits_2_naming_file_and_key() {
    let mut deployment = deployment();
    deployment.pool_toml = deployment
        .pool_toml
        .replace("port = 8080", "port = 8080\nalow_empty = true");
    let output = deployment.run(&[]).exits(2);
    let message = stderr(&output);
    assert!(
        message.contains("config.toml") && message.contains("unknown field `alow_empty`"),
        "{message}"
    );
    assert!(!deployment.state_path().exists() && !deployment.haproxy_cfg().exists());
    assert!(!deployment.path("state/state.json.lock").exists());
}

#[test]
fn missing_config_file_exits_2() {
    let deployment = deployment();
    let output = deployment.command().output().unwrap();
    assert_exit(&output, 2);
    assert!(
        stderr(&output).contains("cannot read config file"),
        "{}",
        describe(&output)
    );
}

#[test]
fn template_syntax_error_exits_2_naming_the_template() {
    let mut deployment = deployment();
    deployment.template = "{{#each pools}}backend {{backend}}".to_owned();
    let output = deployment.run(&[]).exits(2);
    let message = stderr(&output);
    assert!(
        message.contains("haproxy.cfg.hbs") && message.contains("is invalid"),
        "{message}"
    );
    assert!(!deployment.state_path().exists() && !deployment.haproxy_cfg().exists());
}

#[test]
fn detailed_exitcode_without_plan_is_a_usage_error() {
    let output = deployment()
        .command()
        .arg("--detailed-exitcode")
        .output()
        .unwrap();
    assert_exit(&output, 2);
}

/// An empty `HAPROXY_AUTOSCALER_CONFIG` (`Environment=HAPROXY_AUTOSCALER_CONFIG=` in a unit) is
/// no path: the default applies, as if it were unset, rather than a usage error on every command.
#[test]
fn an_empty_config_variable_is_no_config_path() {
    let man = deployment()
        .command()
        .env("HAPROXY_AUTOSCALER_CONFIG", "")
        .arg("man")
        .output()
        .unwrap();
    assert_exit(&man, 0);
    let run = deployment()
        .command()
        .env("HAPROXY_AUTOSCALER_CONFIG", "")
        .arg("--plan")
        .output()
        .unwrap();
    assert!(
        stderr(&run).contains("cannot read config file `/etc/haproxy-autoscaler/config.toml`")
            || run.status.success(),
        "{}",
        describe(&run)
    );
}
