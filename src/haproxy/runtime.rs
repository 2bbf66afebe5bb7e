//! Membership changes through HAProxy's runtime API, and the server state a reload keeps.
//!
//! [`apply`] sends the commands [`crate::decide::runtime`] made, each one checked by its answer
//! (HAProxy answers a refusal in words, and success with a fixed phrase or nothing), then reads
//! `show servers state` back for the plan to compare with the rendered file. [`save_state`]
//! writes `show servers state` to the config's `server-state-file` before a reload, so that
//! drains and servers in maintenance survive it.

use std::path::Path;
use std::time::Duration;

use crate::decide::runtime::{self, RuntimeChange};
use crate::error_chain::error_chain;
use crate::fs_atomic::{self, Ownership};
use crate::haproxy::admin_socket::{self, RuntimeError};
use crate::model::ServerState;

/// Why a change through the runtime API did not take, so the run reloads instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotTaken {
    /// The admin socket could not be asked.
    #[error(transparent)]
    Socket(#[from] RuntimeError),
    /// HAProxy answered a command with a refusal.
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
    /// `show servers state` differs from what the rendered file says.
    #[error("{0}")]
    Differs(String),
}

/// Sends the change's commands in order and reads the result back; `Err` says why the run
/// must reload instead (a refused command, an unreachable socket, a read-back that differs).
pub(crate) async fn apply(
    socket: &str,
    change: &RuntimeChange,
    timeout: Duration,
) -> Result<(), NotTaken> {
    for command in &change.commands {
        let answer = admin_socket::send(socket, &command.command, timeout).await?;
        if !accepted(&command.command, &answer) {
            return Err(NotTaken::Refused {
                command: command.command.clone(),
                answer: answer.trim().to_owned(),
            });
        }
        tracing::debug!("runtime API: {} → {}", command.command, answer.trim());
    }
    let running = servers_state(socket, timeout).await?;
    runtime::verify(&change.read_back, &running).map_err(NotTaken::Differs)
}

/// Whether HAProxy's answer to `command` says it was done (measured on 2.6: `add server`
/// answers `New server registered.`, `del server` `Server deleted.`, `set server ... addr`
/// says what changed, the rest answer nothing).
fn accepted(command: &str, answer: &str) -> bool {
    let answer = answer.trim();
    if command.starts_with("add server ") {
        answer == "New server registered."
    } else if command.starts_with("del server ") {
        answer == "Server deleted."
    } else if command.contains(" addr ") {
        answer.contains("changed from") || answer.starts_with("no need to change")
    } else {
        answer.is_empty()
    }
}

/// `show servers state`, every backend.
pub(crate) async fn servers_state(
    socket: &str,
    timeout: Duration,
) -> Result<Vec<ServerState>, RuntimeError> {
    let text = admin_socket::send(socket, "show servers state", timeout).await?;
    parse_servers_state(&text).map_err(|answer| RuntimeError::Refused {
        command: "show servers state".to_owned(),
        answer,
    })
}

/// Parses `show servers state`: a version line (`1`), a `#` header naming the columns, then one
/// line per server. Columns are found by name.
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    if lines.next().map(str::trim) != Some("1") {
        return Err(format!(
            "not a version 1 server state: {:?}",
            text.lines().next().unwrap_or_default()
        ));
    }
    let header: Vec<&str> = lines
        .next()
        .and_then(|line| line.strip_prefix('#'))
        .ok_or("no column header")?
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|column| *column == name)
            .ok_or_else(|| format!("no `{name}` column"))
    };
    let [backend, name, address, admin, weight, check, port] = [
        "be_name",
        "srv_name",
        "srv_addr",
        "srv_admin_state",
        "srv_uweight",
        "srv_check_state",
        "srv_port",
    ]
    .map(column);
    let (backend, name, address, admin, weight, check, port) =
        (backend?, name?, address?, admin?, weight?, check?, port?);
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let field = |at: usize| {
                fields
                    .get(at)
                    .copied()
                    .ok_or_else(|| format!("short line: {line:?}"))
            };
            let number = |at: usize| {
                field(at)?
                    .parse::<u32>()
                    .map_err(|_| format!("not a number in column {}: {line:?}", header[at]))
            };
            Ok(ServerState {
                backend: field(backend)?.to_owned(),
                name: field(name)?.to_owned(),
                address: field(address)?.to_owned(),
                port: u16::try_from(number(port)?).map_err(|_| format!("bad port: {line:?}"))?,
                admin: number(admin)?,
                weight: number(weight)?,
                check: number(check)?,
            })
        })
        .collect()
}

/// Before a reload from `installed` to `rendered`: writes `show servers state` to the rendered
/// `server-state-file`, if it names one, with only the servers the change leaves alone.
///
/// If it cannot (no answer on the socket, a write that fails), an older state file would be
/// read by the reload and bring back drains and maintenance that no longer hold: it is removed.
/// That is a warning, except on a first install (`installed` is `None`: nothing ran it yet):
/// the rendered file keeps draining servers at weight 0 and booting ones disabled anyway.
pub(crate) async fn save_state(
    socket: &str,
    installed: Option<&str>,
    rendered: &str,
    timeout: Duration,
) {
    let Some(path) = runtime::server_state_file(rendered) else {
        return;
    };
    let saved = match admin_socket::send(socket, "show servers state", timeout).await {
        Ok(dump) => parse_servers_state(&dump)
            .map(|states| keep_unchanged(&dump, &states, installed.unwrap_or_default(), rendered))
            .and_then(|kept| {
                write_state(&path, &kept).map_err(|error| format!("cannot write it: {error}"))
            }),
        Err(error) => Err(error_chain(&error)),
    };
    let why = match saved {
        Ok(()) => {
            tracing::info!("saved HAProxy's server state to `{}`", path.display());
            return;
        }
        Err(why) => why,
    };
    let old = match std::fs::remove_file(&path) {
        Ok(()) => "the older one was removed",
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "there is no older one",
        Err(_) => {
            "the older one cannot be removed either, and this reload may bring back what it says"
        }
    };
    if installed.is_some() {
        tracing::warn!(
            "cannot save HAProxy's server state to `{}` before the reload ({why}); {old}: drains and maintenance set at runtime are lost",
            path.display()
        );
    } else {
        tracing::debug!("no server state saved before the first install ({why}); {old}");
    }
}

/// The state dump with only the servers whose state the reload keeps
/// ([`runtime::keeps_state`]).
fn keep_unchanged(dump: &str, states: &[ServerState], installed: &str, rendered: &str) -> String {
    let keeps = runtime::keeps_state(states, installed, rendered);
    let mut lines = dump.lines().filter(|line| !line.trim().is_empty());
    let mut kept = String::new();
    for line in lines.by_ref().take(2) {
        kept.push_str(line);
        kept.push('\n');
    }
    for (line, keep) in lines.zip(keeps) {
        if keep {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

fn write_state(path: &Path, text: &str) -> std::io::Result<()> {
    let ownership = Ownership::of_existing(
        path,
        Ownership {
            mode: 0o644,
            uid_gid: None,
        },
    )?;
    fs_atomic::write(path, text.as_bytes(), ownership)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 s1 127.0.0.1 2 4 1 1 0 1 0 2 6 0 0 0 - 9101 - 0 0 - - 0
3 web 3 s3 127.0.0.1 0 1 1 1 0 1 0 0 2 0 0 0 - 9102 - 0 0 - - 0

";

    #[test]
    fn parses_show_servers_state_by_column_name() {
        let servers = parse_servers_state(STATE).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(
            servers[1],
            ServerState {
                backend: "web".into(),
                name: "s3".into(),
                address: "127.0.0.1".into(),
                port: 9102,
                admin: 1,
                weight: 1,
                check: 2,
            }
        );
        assert!(!servers[0].in_maintenance() && servers[0].checked());
        assert!(servers[1].in_maintenance() && !servers[1].checked());
        let header_only: String = STATE
            .lines()
            .take(2)
            .flat_map(|line| [line, "\n"])
            .collect();
        assert_eq!(parse_servers_state(&header_only), Ok(Vec::new()));
        for bad in [
            "",
            "Unknown command.\n",
            "1\n3 web\n",
            "1\n# be_name srv_name\nweb s1\n",
        ] {
            assert!(parse_servers_state(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_are_read_per_command() {
        for (command, answer, ok) in [
            (
                "add server web/a 127.0.0.1:1",
                "New server registered.\n\n",
                true,
            ),
            (
                "add server web/a 127.0.0.1:1",
                "Already exists a server with the same name in backend.\n",
                false,
            ),
            ("del server web/a", "Server deleted.\n", true),
            (
                "del server web/a",
                "Server still has connections attached to it, cannot remove it.\n",
                false,
            ),
            (
                "set server web/a addr 127.0.0.1 port 2",
                "IP changed from '127.0.0.2' to '127.0.0.1', port changed from '1' to '2' by 'stats socket command'\n",
                true,
            ),
            (
                "set server web/a addr 127.0.0.1 port 2",
                "no need to change the addr, port changed from '1' to '2' by 'stats socket command'\n",
                true,
            ),
            (
                "set server web/a addr 127.0.0.1 port 2",
                "No such server.\n",
                false,
            ),
            ("set server web/a state ready", "\n", true),
            ("set server web/a weight 3", "No such server.\n", false),
        ] {
            assert_eq!(accepted(command, answer), ok, "{command}: {answer}");
        }
    }

    #[test]
    fn the_saved_state_leaves_out_servers_the_new_file_moves() {
        let states = parse_servers_state(STATE).unwrap();
        let installed = "backend web\n    server s1 127.0.0.1:9101\n    server s3 127.0.0.1:9102\n";
        let rendered = "backend web\n    server s1 127.0.0.1:9101\n    server s3 127.0.0.1:9109\n";
        let kept = keep_unchanged(STATE, &states, installed, rendered);
        assert!(kept.starts_with("1\n# be_id"), "{kept}");
        assert!(kept.contains(" s1 ") && !kept.contains(" s3 "), "{kept}");
        let moved = "backend web\n    server s1 127.0.0.2:9101\n";
        assert_eq!(
            keep_unchanged(STATE, &states, installed, moved)
                .lines()
                .count(),
            2
        );
    }

    /// A state that cannot be saved leaves no older one for the reload to read.
    #[tokio::test]
    async fn a_state_that_cannot_be_saved_removes_the_older_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("server-state");
        std::fs::write(&state, STATE).unwrap();
        let rendered = format!(
            "global\n    server-state-file {}\nbackend web\n    server s1 127.0.0.1:9101\n",
            state.display()
        );
        let socket = dir.path().join("no-haproxy.sock").display().to_string();
        save_state(&socket, Some(&rendered), &rendered, Duration::from_secs(1)).await;
        assert!(!state.exists());
    }
}
