//! Runs the operator's commands (check, reload): argv, never through a shell, with a timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Most of a command's output that an error message quotes.
const OUTPUT_LIMIT: usize = 4000;

/// A command that could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {}s and was killed", after.as_secs())]
    Timeout { command: String, after: Duration },
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

/// Shows an argv the way an operator would type it.
pub fn display(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// Runs `argv`; succeeds only if it exits 0 within `timeout`. Returns its combined output.
pub async fn run(argv: &[String], timeout: Duration) -> Result<String, CommandError> {
    let (stdout, stderr) = run_with_input(argv, None, timeout).await?;
    Ok(limit(format!("{stdout}{stderr}")))
}

/// Runs `argv` with `input` on its stdin; succeeds only if it exits 0 within `timeout`.
/// Returns (stdout, stderr); a failure quotes both.
pub async fn run_with_input(
    argv: &[String],
    input: Option<&str>,
    timeout: Duration,
) -> Result<(String, String), CommandError> {
    use tokio::io::AsyncWriteExt;
    let command = display(argv);
    let spawn_error = |source| CommandError::Spawn {
        command: command.clone(),
        source,
    };
    let (program, args) = argv
        .split_first()
        .expect("the config guarantees a program name");
    let mut child = Command::new(program)
        .args(args)
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
    let exchange = async {
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A command that exits without reading its input is not an error here.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, exchange).await {
        Ok(output) => output.map_err(spawn_error)?,
        Err(_) => {
            return Err(CommandError::Timeout {
                command,
                after: timeout,
            });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(CommandError::Failed {
            command,
            status: output.status.to_string(),
            output: limit(format!("{stdout}{stderr}")),
        })
    }
}

/// Trims output to what an error message should quote.
fn limit(text: String) -> String {
    let mut text = text.trim().to_owned();
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

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
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

    #[tokio::test]
    async fn a_hanging_command_is_killed() {
        let started = std::time::Instant::now();
        let error = run(&argv(&["sleep", "30"]), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, CommandError::Timeout { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn arguments_are_never_interpreted_by_a_shell() {
        assert_eq!(
            display(&argv(&["echo", "a b", "$HOME"])),
            "echo 'a b' '$HOME'"
        );
    }
}
