//! The exec provider: the operator's own commands list, launch and terminate instances, and
//! exchange JSON with this tool. It is how clouds we do not ship are reached (an OpenStack CLI
//! wrapper, a script around a hypervisor, local processes).
//!
//! - `list` prints a JSON array of instances:
//!   `[{"id": "...", "address": "10.0.0.5", "port": 8080, "state": "running",
//!      "launch_time": "2026-11-23T19:00:00Z", "tags": {"k": "v"}}]`
//!   (`port`, `state` (default `running`), `launch_time` and `tags` are optional; only `pending`
//!   and `running` instances are kept);
//! - `launch` reads `{"pool": "...", "count": N, "token": "...", "tags": {...}}` on stdin and
//!   prints a JSON array of the new instance ids. It must give the instances those tags and report
//!   them in `list`: the launch-token tag is how a launch interrupted by a crash is found again;
//! - `terminate` reads `{"pool": "...", "ids": [...]}` on stdin.
//!
//! A non-zero exit, a timeout or output that is not the documented JSON is an error naming the
//! command; the run then changes nothing it has not already recorded.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Cause, CloudError, CloudErrorKind, Operation, Provider, fatal_call};
use crate::command::{self, CommandError};
use crate::config::scaling::{TAG_LAUNCH_TOKEN, TAG_POOL};
use crate::config::{ExecCommands, Launcher, PoolConfig};
use crate::model::{Instance, InstanceState, Tags};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listed {
    id: String,
    address: String,
    port: Option<u16>,
    #[serde(default = "running")]
    state: String,
    launch_time: Option<String>,
    #[serde(default)]
    tags: Tags,
}

fn running() -> String {
    "running".to_owned()
}

#[derive(Debug, Serialize)]
struct LaunchRequest<'a> {
    pool: &'a str,
    count: u32,
    token: &'a str,
    tags: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, Serialize)]
struct TerminateRequest<'a> {
    pool: &'a str,
    ids: &'a [String],
}

fn error(pool: &PoolConfig, operation: Operation, error: CommandError) -> CloudError {
    let kind = match error {
        CommandError::Timeout { .. } => CloudErrorKind::Transient,
        _ => CloudErrorKind::Command,
    };
    CloudError {
        pool: pool.name.clone(),
        operation,
        kind,
        cause: Cause::Command(error),
    }
}

fn bad_json(
    pool: &PoolConfig,
    operation: Operation,
    argv: &[String],
    problem: impl std::fmt::Display,
) -> CloudError {
    CloudError {
        pool: pool.name.clone(),
        operation,
        kind: CloudErrorKind::Command,
        cause: Cause::Output {
            command: command::display(argv),
            problem: problem.to_string(),
        },
    }
}

/// The exec provider of one pool: its `[pool.exec]` commands.
pub(crate) struct Exec<'a> {
    commands: &'a ExecCommands,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(commands: &'a ExecCommands) -> Exec<'a> {
        Exec { commands }
    }
}

/// Why an exec pool's launcher is not the exec provider's.
const NOT_EXEC: &str = "an exec pool was given another provider's launcher";

impl Provider for Exec<'_> {
    async fn list(&self, pool: &PoolConfig) -> Result<Vec<Instance>, CloudError> {
        list(pool, self.commands).await
    }

    fn lists_every_launch(&self, _pool: &PoolConfig) -> bool {
        true
    }

    async fn find_by_token(
        &self,
        pool: &PoolConfig,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        find_by_token(pool, self.commands, token).await
    }

    async fn launch(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        count: u32,
        token: &str,
    ) -> Result<Vec<String>, CloudError> {
        let Launcher::Exec {
            launch: argv,
            timeout,
            ..
        } = launcher
        else {
            return Err(fatal_call(pool, Operation::Launch, NOT_EXEC));
        };
        launch(pool, argv, *timeout, count, token).await
    }

    async fn terminate(
        &self,
        pool: &PoolConfig,
        launcher: &Launcher,
        ids: &[String],
    ) -> Result<(), CloudError> {
        let Launcher::Exec {
            terminate: argv,
            timeout,
            ..
        } = launcher
        else {
            return Err(fatal_call(pool, Operation::Terminate, NOT_EXEC));
        };
        terminate(pool, argv, *timeout, ids).await
    }
}

/// Runs `list` and keeps the pending and running instances.
pub(crate) async fn list(
    pool: &PoolConfig,
    commands: &ExecCommands,
) -> Result<Vec<Instance>, CloudError> {
    let operation = Operation::List;
    let (stdout, _) = command::run_with_input(&commands.list, None, commands.timeout)
        .await
        .map_err(|e| error(pool, operation, e))?;
    parse_list(&stdout).map_err(|e| bad_json(pool, operation, &commands.list, e))
}

/// The pending and running instances of `list`'s JSON, sorted by id.
pub(crate) fn parse_list(stdout: &[u8]) -> Result<Vec<Instance>, serde_json::Error> {
    let listed: Vec<Listed> = serde_json::from_slice(stdout)?;
    let mut instances = Vec::with_capacity(listed.len());
    for entry in listed {
        let state = match entry.state.as_str() {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            _ => continue,
        };
        instances.push(Instance {
            id: entry.id,
            state,
            private_ip: Some(entry.address),
            public_ip: None,
            port: entry.port,
            launch_time: entry.launch_time,
            zone: None,
            image_id: None,
            tags: entry.tags,
        });
    }
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(instances)
}

/// The listed instances carrying the launch token.
pub(crate) async fn find_by_token(
    pool: &PoolConfig,
    commands: &ExecCommands,
    token: &str,
) -> Result<Vec<String>, CloudError> {
    Ok(list(pool, commands)
        .await?
        .into_iter()
        .filter(|instance| instance.tags.get(TAG_LAUNCH_TOKEN).map(String::as_str) == Some(token))
        .map(|instance| instance.id)
        .collect())
}

/// Runs `launch` with the request on stdin; returns the new ids.
pub(crate) async fn launch(
    pool: &PoolConfig,
    argv: &[String],
    timeout: Duration,
    count: u32,
    token: &str,
) -> Result<Vec<String>, CloudError> {
    let operation = Operation::Launch;
    let request = LaunchRequest {
        pool: &pool.name,
        count,
        token,
        tags: BTreeMap::from([(TAG_POOL, pool.name.as_str()), (TAG_LAUNCH_TOKEN, token)]),
    };
    let input = serde_json::to_string(&request).expect("requests serialize");
    let (stdout, _) = command::run_with_input(argv, Some(&input), timeout)
        .await
        .map_err(|e| error(pool, operation, e))?;
    serde_json::from_slice(&stdout).map_err(|e| bad_json(pool, operation, argv, e))
}

/// Runs `terminate` with the ids on stdin.
pub(crate) async fn terminate(
    pool: &PoolConfig,
    argv: &[String],
    timeout: Duration,
    ids: &[String],
) -> Result<(), CloudError> {
    let input = serde_json::to_string(&TerminateRequest {
        pool: &pool.name,
        ids,
    })
    .expect("requests serialize");
    command::run_with_input(argv, Some(&input), timeout)
        .await
        .map(drop)
        .map_err(|e| error(pool, Operation::Terminate, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn pool(dir: &Path, list: &str) -> PoolConfig {
        let script = dir.join("provider.sh");
        std::fs::write(&script, list).unwrap();
        let text = format!(
            "[[pool]]\nname = \"web\"\nport = 80\nprovider = \"exec\"\n[pool.exec]\nlist = [\"sh\", \"{0}\", \"list\"]\nlaunch = [\"sh\", \"{0}\", \"launch\"]\nterminate = [\"sh\", \"{0}\", \"terminate\"]\ntimeout_s = 2\n",
            script.display()
        );
        Config::parse(&text, Path::new("t.toml"))
            .unwrap()
            .pools
            .remove(0)
    }

    fn commands(pool: &PoolConfig) -> &ExecCommands {
        match &pool.provider {
            crate::config::ProviderKind::Exec(commands) => commands,
            _ => unreachable!("an exec pool"),
        }
    }

    #[tokio::test]
    async fn list_launch_and_terminate_speak_the_documented_json() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdin.log");
        let script = format!(
            r#"case "$1" in
list) echo '[{{"id": "b", "address": "127.0.0.1", "port": 9002, "tags": {{"haproxy-autoscaler:launch-token": "t1"}}}},
             {{"id": "a", "address": "127.0.0.1", "state": "pending"}},
             {{"id": "gone", "address": "127.0.0.1", "state": "terminated"}}]' ;;
launch) cat >> {0}; echo >> {0}; echo '["c", "d"]' ;;
terminate) cat >> {0}; echo >> {0} ;;
esac"#,
            log.display()
        );
        let pool = pool(dir.path(), &script);
        let listed = list(&pool, commands(&pool)).await.unwrap();
        let summary: Vec<(&str, InstanceState, Option<u16>)> = listed
            .iter()
            .map(|i| (i.id.as_str(), i.state, i.port))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", InstanceState::Pending, None),
                ("b", InstanceState::Running, Some(9002))
            ]
        );
        assert_eq!(
            find_by_token(&pool, commands(&pool), "t1").await.unwrap(),
            ["b"]
        );
        // The pool does not scale; its launch and terminate commands are the list command's
        // script with another first argument.
        let with = |verb: &str| {
            let mut argv = commands(&pool).list.clone();
            *argv.last_mut().unwrap() = verb.to_owned();
            argv
        };
        let (argv, gone) = (with("launch"), with("terminate"));
        let timeout = commands(&pool).timeout;
        assert_eq!(
            launch(&pool, &argv, timeout, 2, "t2").await.unwrap(),
            ["c", "d"]
        );
        terminate(&pool, &gone, timeout, &["a".into()])
            .await
            .unwrap();
        let requests: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(requests[0]["count"], 2);
        assert_eq!(requests[0]["token"], "t2");
        assert_eq!(requests[0]["tags"]["haproxy-autoscaler:pool"], "web");
        assert_eq!(requests[1]["ids"][0], "a");
    }

    #[tokio::test]
    async fn bad_output_failures_and_timeouts_are_errors_naming_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "echo 'not json'",
                "not the documented JSON",
                CloudErrorKind::Command,
            ),
            (
                "echo '[{\"id\": 1}]'",
                "not the documented JSON",
                CloudErrorKind::Command,
            ),
            (
                "echo '[{\"id\": \"a\", \"address\": \"x\", \"colour\": \"red\"}]'",
                "unknown field `colour`",
                CloudErrorKind::Command,
            ),
            ("echo oops >&2; exit 3", "oops", CloudErrorKind::Command),
            (
                "sleep 10",
                "did not finish within 2s",
                CloudErrorKind::Transient,
            ),
        ];
        for (script, expected, kind) in cases {
            let pool = pool(dir.path(), script);
            let error = list(&pool, commands(&pool)).await.unwrap_err();
            let message = crate::error_chain::error_chain(&error);
            assert!(
                message.contains(expected) && message.contains("provider.sh"),
                "{script}: {message}"
            );
            assert_eq!(error.kind, kind, "{script}");
        }
    }
}
