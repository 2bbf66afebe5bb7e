//! Runs the operator's commands (check, reload, exec provider, notify): argv, never through a
//! shell, with a timeout.
//!
//! Each command runs in a process group of its own, and a timeout kills the whole group: a
//! command's children (`sh -c 'sleep 30'`) must not outlive it, pile up under cron, or fire a
//! reload after the tool restored the previous config. A command that exits in time is left
//! alone, children and all (a reload command may start a daemon on purpose).
//!
//! A program named without a `/` is looked up in `PATH`, then in the folders where Debian and
//! others install system programs (`/usr/local/sbin`, `/usr/sbin`, `/sbin`): cron's `PATH` is
//! `/usr/bin:/bin`, and `haproxy` lives in `/usr/sbin`.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Most of a command's output that an error message quotes.
const OUTPUT_LIMIT: usize = 4000;

/// A command that could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("could not run `{command}`: {error}")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    #[error(
        "could not run `{command}`: program `{program}` was not found in PATH ({}) nor in {}; give its full path in the config",
        std::env::var("PATH").unwrap_or_default(),
        SYSTEM_FOLDERS.join(", ")
    )]
    NotFound { command: String, program: String },
    #[error("`{command}` did not finish within {}s and was killed", after.as_secs())]
    Timeout { command: String, after: Duration },
    #[error("`{command}` printed more than {} MiB and was killed", limit / (1024 * 1024))]
    Flood { command: String, limit: usize },
    #[error("`{command}` failed ({status}){}", quote_output(output))]
    Failed {
        command: String,
        status: String,
        output: String,
    },
}

fn quote_output(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(":\n{output}")
    }
}

/// Where system programs live besides `PATH` (cron's is `/usr/bin:/bin`).
const SYSTEM_FOLDERS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The file a program name runs: a name with a `/` as is, otherwise the first executable of
/// that name in `PATH`, then in [`SYSTEM_FOLDERS`]. `None` if there is none.
pub(crate) fn resolve_program(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(program.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_FOLDERS.iter().map(std::path::PathBuf::from))
        .map(|folder| folder.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Shows an argv the way an operator would type it.
pub(crate) fn display(argv: &[String]) -> String {
    crate::model::text::shell_words(argv)
}

/// Runs `argv`; succeeds only if it exits 0 within `timeout`. Returns its combined output.
pub(crate) async fn run(argv: &[String], timeout: Duration) -> Result<String, CommandError> {
    let (stdout, stderr) = run_with_input(argv, None, timeout).await?;
    Ok(limit(&format!(
        "{}{stderr}",
        String::from_utf8_lossy(&stdout)
    )))
}

/// Most of a command's stdout that is read (an exec pool of 100,000 instances prints ~15 MB);
/// more is refused and the command killed, so a flood (`yes`) costs a fixed amount of memory.
pub(crate) const STDOUT_LIMIT: usize = 64 * 1024 * 1024;
/// Most of a command's stderr that is kept.
const STDERR_LIMIT: usize = 1024 * 1024;
/// How long the output of a command that exited is still read: a child it left behind may hold
/// its pipes open, and the command is judged by its own exit status, not by when they close.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Runs `argv` with `input` on its stdin; succeeds only if it exits 0 within `timeout`.
/// Returns (stdout as bytes, stderr as text); a failure quotes both.
pub(crate) async fn run_with_input(
    argv: &[String],
    input: Option<&str>,
    timeout: Duration,
) -> Result<(Vec<u8>, String), CommandError> {
    use tokio::io::AsyncWriteExt;
    let command = display(argv);
    let spawn_error = |error| CommandError::Spawn {
        command: command.clone(),
        error,
    };
    // The config refuses an empty argv; one reaching here is refused, not a panic.
    let Some((program, args)) = argv.split_first() else {
        return Err(spawn_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the command is empty: it names no program",
        )));
    };
    let resolved = resolve_program(program).ok_or_else(|| CommandError::NotFound {
        command: command.clone(),
        program: program.clone(),
    })?;
    let mut child = Command::new(resolved)
        .args(args)
        .process_group(0)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let group = child.id();
    let mut guard = KillUnlessFinished {
        group,
        finished: false,
    };
    let stdout = Captured::start(child.stdout.take(), STDOUT_LIMIT, group);
    let stderr = Captured::start(child.stderr.take(), STDERR_LIMIT, None);
    if let (Some(input), Some(mut stdin)) = (input.map(str::to_owned), child.stdin.take()) {
        // A command that exits without reading its input is not an error here.
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let status = if let Ok(status) = tokio::time::timeout(timeout, child.wait()).await {
        status.map_err(spawn_error)?
    } else {
        kill_group(group);
        return Err(CommandError::Timeout {
            command,
            after: timeout,
        });
    };
    guard.finished = true;
    // Both pipes are read at once, under one deadline (issue 29, class 5): a child left behind
    // holding both costs DRAIN_AFTER_EXIT once, not once per pipe.
    let deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    let (stdout, flooded) = stdout.finish(deadline).await;
    let (stderr, _) = stderr.finish(deadline).await;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    if flooded {
        return Err(CommandError::Flood {
            command,
            limit: STDOUT_LIMIT,
        });
    }
    if status.success() {
        Ok((stdout, stderr))
    } else {
        Err(CommandError::Failed {
            command,
            status: status.to_string(),
            output: limit(&format!("{}{stderr}", String::from_utf8_lossy(&stdout))),
        })
    }
}

/// One output stream of a command, read in the background into a bounded buffer.
struct Captured {
    buffer: std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Captured {
    /// Reads `stream` until it closes or `limit` bytes; past the limit, the buffer is marked
    /// flooded and the command's process group (`kill`) is killed.
    fn start(
        stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
        limit: usize,
        kill: Option<u32>,
    ) -> Captured {
        use tokio::io::AsyncReadExt;
        let buffer = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), false)));
        let reader = stream.map(|mut stream| {
            let buffer = std::sync::Arc::clone(&buffer);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 64 * 1024];
                while let Ok(read) = stream.read(&mut chunk).await {
                    if read == 0 {
                        return;
                    }
                    let mut guard = buffer.lock().expect("capture lock");
                    let room = limit.saturating_sub(guard.0.len());
                    guard.0.extend_from_slice(&chunk[..read.min(room)]);
                    if read > room {
                        guard.1 = true;
                        drop(guard);
                        if kill.is_some() {
                            kill_group(kill);
                        }
                        return;
                    }
                }
            })
        });
        Captured { buffer, reader }
    }

    /// What was read, and whether it overflowed, once the stream closed or `deadline` passed
    /// (a child of the command may keep it open).
    async fn finish(self, deadline: tokio::time::Instant) -> (Vec<u8>, bool) {
        if let Some(reader) = self.reader {
            let abort = reader.abort_handle();
            if tokio::time::timeout_at(deadline, reader).await.is_err() {
                abort.abort();
            }
        }
        let mut guard = self.buffer.lock().expect("capture lock");
        (std::mem::take(&mut guard.0), guard.1)
    }
}

/// Kills a command's process group unless it finished: a command whose future is dropped before
/// it finished (the run stopped by a signal, see `app`) is killed with everything it started.
/// Its process group is its own, which the signal that stopped the run did not reach.
struct KillUnlessFinished {
    group: Option<u32>,
    finished: bool,
}

impl Drop for KillUnlessFinished {
    fn drop(&mut self) {
        if !self.finished {
            kill_group(self.group);
        }
    }
}

/// Kills the process group a command leads (its id is the command's pid).
fn kill_group(leader: Option<u32>) {
    let group = leader
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group
        && let Err(error) =
            rustix::process::kill_process_group(group, rustix::process::Signal::KILL)
    {
        // Already gone (ESRCH) is fine; anything else is worth a word.
        if error != rustix::io::Errno::SRCH {
            tracing::warn!(
                "cannot kill process group {}: {error}",
                group.as_raw_nonzero()
            );
        }
    }
}

/// Trims output to what an error message should quote, made [`printable`].
///
/// [`printable`]: crate::model::text::printable
fn limit(text: &str) -> String {
    let mut text = crate::model::text::printable(text.trim());
    if text.len() > OUTPUT_LIMIT {
        let cut = (0..=OUTPUT_LIMIT)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n[output truncated]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_command_is_refused_not_a_panic() {
        let error = run(&[], Duration::from_secs(1)).await.unwrap_err();
        assert!(
            error.to_string().contains("the command is empty"),
            "{error}"
        );
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(std::string::ToString::to_string).collect()
    }

    #[tokio::test]
    async fn success_returns_output() {
        let out = run(
            &argv(&["sh", "-c", "echo hi; echo err >&2"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out, "hi\nerr");
    }

    #[tokio::test]
    async fn failure_quotes_status_and_output() {
        let error = run(
            &argv(&["sh", "-c", "echo broken >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("exit status: 3") && error.contains("broken"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let error = run(&argv(&["/nonexistent/reload"]), Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/reload"), "{error}");
    }

    /// Issue 29, class 5: a command that exits 0 and leaves a child holding both its stdout and
    /// its stderr is judged by its exit, its pipes read for DRAIN_AFTER_EXIT once in all (it was
    /// once per pipe, one after the other).
    #[tokio::test]
    async fn a_child_left_holding_both_pipes_costs_the_drain_bound_once() {
        let started = std::time::Instant::now();
        let (stdout, _) = run_with_input(
            &argv(&["sh", "-c", "echo out; (sleep 8 &); exit 0"]),
            None,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(stdout, b"out\n");
        assert!(
            elapsed >= DRAIN_AFTER_EXIT && elapsed < DRAIN_AFTER_EXIT * 2,
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed() {
        let started = std::time::Instant::now();
        let error = run(&argv(&["sleep", "30"]), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, CommandError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// Issue 9, item 10: a command's children die with it when it times out.
    #[tokio::test]
    async fn issue_9_10_a_timeout_kills_the_commands_children_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let error = run(&argv(&["sh", "-c", &script]), Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(matches!(error, CommandError::Timeout { .. }), "{error}");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_owned();
        // The grandchild is gone (or a zombie about to be reaped by init).
        let mut gone = false;
        for _ in 0..50 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if status.is_empty() || status.contains("State:\tZ") {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "sleep {pid} outlived its command");
    }

    /// Issue 9, item 4: cron's PATH has no /usr/sbin, where Debian installs haproxy.
    #[test]
    fn issue_9_4_system_programs_are_found_outside_path() {
        // `sh` is in PATH everywhere; a program that exists nowhere is `None`.
        assert!(resolve_program("sh").is_some());
        assert!(resolve_program("no-such-program-hxa").is_none());
        assert_eq!(
            resolve_program("./relative/prog"),
            Some("./relative/prog".into())
        );
    }

    #[tokio::test]
    async fn a_missing_program_could_not_run_and_says_where_it_looked() {
        let error = run(
            &argv(&["no-such-program-hxa", "-c"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("could not run `no-such-program-hxa -c`")
                && error.contains("/usr/sbin")
                && error.contains("full path"),
            "{error}"
        );
    }

    #[test]
    fn arguments_are_never_interpreted_by_a_shell() {
        assert_eq!(
            display(&argv(&["echo", "a b", "$HOME"])),
            "echo 'a b' '$HOME'"
        );
    }
}
