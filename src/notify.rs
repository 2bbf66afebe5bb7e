//! Notifications: the [`EventKind`]s (`scaled`, `capped`, `rapid`, `blocked`, `skipped`,
//! `failed`, `recovered`) to the log, a webhook (POST
//! JSON with a Slack-compatible `text` field) and a command (the event JSON on stdin).
//!
//! A sink that fails is reported in the log and never fails the run. The webhook URL carries its
//! token, so it never appears in a message: errors name "the webhook", not its address.

use std::time::Duration;

use serde::Serialize;

use crate::command::CommandError;
use crate::config::{EventKind, Notify};
use crate::decide::scaling::Event;

/// How long one sink may take.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// One event, as sinks receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Notification {
    pub event: EventKind,
    pub pool: Option<String>,
    /// One line for people (and Slack's `text`).
    pub text: String,
    pub details: serde_json::Value,
}

/// The notification for a pool's scaling event.
pub(crate) fn from_event(pool: &str, event: &Event) -> Notification {
    let (name, text) = match event {
        Event::Scaled { from, to, reason } => (
            EventKind::Scaled,
            format!("pool {pool} scaled from {from} to {to}: {reason}"),
        ),
        Event::Capped { reason, .. } => (
            EventKind::Capped,
            format!("pool {pool} is capped: {reason}"),
        ),
        Event::ScaleDownBlocked {
            from,
            wanted,
            reason,
        } => (
            EventKind::Blocked,
            format!("pool {pool} cannot scale down from {from} to {wanted}: {reason}"),
        ),
        Event::Replaced {
            server,
            status,
            for_s,
        } => (
            EventKind::Replaced,
            format!(
                "pool {pool}: server {server} was {status} for {for_s} s and is replaced: a new server is launched, and it is drained and terminated"
            ),
        ),
        Event::Rapid {
            reversals,
            window_s,
        } => (
            EventKind::Rapid,
            format!(
                "pool {pool} reversed its direction {reversals} times within {window_s}s (flapping): widen `tolerance` or `scale_down_window_s`, or raise `cooldown_s`"
            ),
        ),
    };
    Notification {
        event: name,
        pool: Some(pool.to_owned()),
        text,
        details: serde_json::to_value(event).expect("events serialize"),
    }
}

/// The notification for an instance left out for a bad value (sent the first run it is).
pub(crate) fn skipped(pool: &str, instance_id: &str, reason: &str) -> Notification {
    Notification {
        event: EventKind::Skipped,
        pool: Some(pool.to_owned()),
        text: format!(
            "pool {pool}: instance {} is left out of haproxy.cfg: it {reason}",
            crate::model::text::shown(instance_id)
        ),
        details: serde_json::json!({ "instance_id": instance_id, "reason": reason }),
    }
}

/// The notification for a failed run.
pub(crate) fn failed(error: &str) -> Notification {
    Notification {
        event: EventKind::Failed,
        pool: None,
        text: format!("haproxy-autoscaler run failed: {error}"),
        details: serde_json::Value::Null,
    }
}

/// Since when runs have been failing, and when that was last notified: kept beside the state
/// file (`<state>.failing`, see [`failing_path`]) so that it survives a state file that cannot
/// be read, which may be the very failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Failing {
    pub since: i64,
    pub notified_at: i64,
}

/// Where [`Failing`] is kept for a state file.
pub(crate) fn failing_path(state_path: &std::path::Path) -> std::path::PathBuf {
    crate::config::with_suffix(state_path, ".failing")
}

/// The `failed` / `recovered` notifications of a run, on transitions only: the first failed
/// run, then again every `repeat_s` (0: never again) while runs keep failing, and `recovered`
/// on the first run that succeeds after failures. Returns what to keep for the next run.
/// Pure: `now` and what the previous run left are inputs.
pub(crate) fn failure_transition(
    previous: Option<Failing>,
    now: i64,
    error: Option<&str>,
    repeat_s: u64,
) -> (Option<Notification>, Option<Failing>) {
    match (previous, error) {
        (None, None) => (None, None),
        (Some(failing), None) => (
            Some(Notification {
                event: EventKind::Recovered,
                pool: None,
                text: format!(
                    "haproxy-autoscaler runs succeed again, after failing for {}s",
                    now.saturating_sub(failing.since)
                ),
                details: serde_json::json!({ "failing_since": failing.since }),
            }),
            None,
        ),
        (None, Some(error)) => (
            Some(failed(error)),
            Some(Failing {
                since: now,
                notified_at: now,
            }),
        ),
        (Some(failing), Some(error)) => {
            let due = repeat_s > 0 && now >= failing.notified_at.saturating_add(repeat_s as i64);
            if !due {
                return (None, Some(failing));
            }
            let mut notification = failed(error);
            notification.text = format!(
                "haproxy-autoscaler runs have been failing for {}s: {error}",
                now.saturating_sub(failing.since)
            );
            (
                Some(notification),
                Some(Failing {
                    since: failing.since,
                    notified_at: now,
                }),
            )
        }
    }
}

/// Reads what the previous run left in `<state>.failing`; a missing or unreadable file is "not
/// failing" (at worst one notification too many).
pub(crate) fn load_failing(state_path: &std::path::Path) -> Option<Failing> {
    let bytes = crate::fs_atomic::read_regular(&failing_path(state_path), 64 * 1024).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Keeps `failing` for the next run, or removes the file. A failure here is only logged: it
/// costs at most a repeated or a missed notification.
pub(crate) fn save_failing(state_path: &std::path::Path, failing: Option<Failing>) {
    let path = failing_path(state_path);
    let outcome = match failing {
        Some(failing) => crate::fs_atomic::write(
            &path,
            &serde_json::to_vec(&failing).expect("failing serializes"),
            crate::fs_atomic::Ownership {
                mode: 0o600,
                uid_gid: None,
            },
        ),
        None => match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        },
    };
    if let Err(error) = outcome {
        tracing::warn!("cannot update `{}`: {error}", path.display());
    }
}

/// Logs every notification and sends the subscribed ones to the configured sinks. A sink that
/// timed out is not tried again in this run (each try would cost the run another
/// [`SINK_TIMEOUT`]); what it missed is counted in one warning.
pub(crate) async fn send(notify: &Notify, notifications: &[Notification]) {
    let (mut command_down, mut webhook_down) = (None::<usize>, None::<usize>);
    for notification in notifications {
        match notification.event {
            // The run prints its own error and warnings once; logging them again would say
            // them twice.
            EventKind::Failed | EventKind::Skipped => {}
            EventKind::Scaled | EventKind::Recovered => tracing::info!("{}", notification.text),
            EventKind::Capped | EventKind::Rapid | EventKind::Blocked | EventKind::Replaced => {
                tracing::warn!("{}", notification.text);
            }
        }
        if !notify.on.contains(&notification.event) {
            continue;
        }
        let body = serde_json::to_string(notification).expect("notifications serialize");
        if let Some(argv) = &notify.command {
            if let Some(missed) = command_down.as_mut() {
                *missed += 1;
            } else if let Err(error) = run_command(argv, &body).await {
                tracing::warn!("notify command: {error}");
                if error.is_timeout() {
                    command_down = Some(0);
                }
            }
        }
        if let Some(webhook) = &notify.webhook {
            if let Some(missed) = webhook_down.as_mut() {
                *missed += 1;
            } else if let Err(error) = post(webhook.expose(), body).await {
                tracing::warn!("notify webhook failed: {error}");
                if error.is_timeout() {
                    webhook_down = Some(0);
                }
            }
        }
    }
    for (sink, missed) in [("command", command_down), ("webhook", webhook_down)] {
        if let Some(missed) = missed.filter(|missed| *missed > 0) {
            tracing::warn!(
                "notify {sink}: {missed} more notification(s) not sent this run: it timed out"
            );
        }
    }
}

/// Why a sink did not take a notification. Never names the webhook's URL (it holds a token).
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("no TLS roots")]
    NoTlsRoots(#[source] std::io::Error),
    #[error("the webhook URL is not a valid URI")]
    BadUri,
    #[error("no answer within {}s", SINK_TIMEOUT.as_secs())]
    Timeout,
    /// The request failed; its cause is left out, as it may name the URL.
    #[error("request failed ({})", if *connect { "cannot connect" } else { "transport error" })]
    Request { connect: bool },
    #[error("answered {0}")]
    Status(http::StatusCode),
}

impl SinkError {
    /// The sink took the whole [`SINK_TIMEOUT`] and did not answer.
    fn is_timeout(&self) -> bool {
        matches!(
            self,
            SinkError::Timeout | SinkError::Command(CommandError::Timeout { .. })
        )
    }
}

async fn run_command(argv: &[String], body: &str) -> Result<(), SinkError> {
    crate::command::run_with_input(argv, Some(body), SINK_TIMEOUT).await?;
    Ok(())
}

/// POSTs `body` as JSON. Errors never include the URL.
async fn post(url: &str, body: String) -> Result<(), SinkError> {
    use http_body_util::Full;
    let client = crate::http::client().map_err(SinkError::NoTlsRoots)?;
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "haproxy-autoscaler")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|_| SinkError::BadUri)?;
    // Only the status is read: an endless or trickled answer body costs nothing.
    let status = crate::exchange::status_only(&client, request, SINK_TIMEOUT)
        .await
        .map_err(|error| match error {
            crate::exchange::ExchangeError::Request(error) => SinkError::Request {
                connect: error.is_connect(),
            },
            _ => SinkError::Timeout,
        })?;
    if status.is_success() {
        Ok(())
    } else {
        Err(SinkError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use tokio::io::AsyncWriteExt;

    /// Issue 9, item 12: `failed` on the transition, again every `repeat_s`, `recovered` once.
    #[test]
    fn issue_9_12_failed_is_notified_on_transitions_not_every_run() {
        let events = |runs: &[(i64, bool)], repeat_s| {
            let mut kept = None;
            let mut seen = Vec::new();
            for (now, ok) in runs {
                let (notification, next) =
                    failure_transition(kept, *now, (!ok).then_some("boom"), repeat_s);
                kept = next;
                seen.push(notification.map_or("-", |n| n.event.name()));
            }
            seen
        };
        let minutes: Vec<(i64, bool)> = (0..10).map(|m| (m * 60, m == 0 || m >= 8)).collect();
        assert_eq!(
            events(&minutes, 180),
            [
                "-",
                "failed",
                "-",
                "-",
                "failed",
                "-",
                "-",
                "failed",
                "recovered",
                "-"
            ]
        );
        assert_eq!(
            events(&minutes, 0),
            [
                "-",
                "failed",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "recovered",
                "-"
            ]
        );
    }

    fn notify(on: &[&str]) -> Notify {
        Notify {
            on: EventKind::ALL
                .into_iter()
                .filter(|kind| on.contains(&kind.name()))
                .collect(),
            ..Notify::default()
        }
    }

    #[tokio::test]
    async fn the_command_gets_the_event_json_on_stdin_for_subscribed_events_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events");
        let mut notify = notify(&["scaled", "failed"]);
        notify.command = Some(vec![
            "sh".into(),
            "-c".into(),
            format!("cat >> {}; echo >> {}", out.display(), out.display()),
        ]);
        let events = [
            from_event(
                "web",
                &Event::Scaled {
                    from: 2,
                    to: 4,
                    reason: "busy".into(),
                },
            ),
            from_event(
                "web",
                &Event::Rapid {
                    reversals: 6,
                    window_s: 600,
                },
            ),
            failed("boom"),
        ];
        send(&notify, &events).await;
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "scaled");
        assert_eq!(lines[0]["text"], "pool web scaled from 2 to 4: busy");
        assert_eq!(lines[0]["details"]["to"], 4);
        assert_eq!(lines[1]["event"], "failed");
    }

    #[tokio::test]
    async fn failing_sinks_never_fail_and_never_show_the_webhook_url() {
        let mut notify = notify(&["failed"]);
        notify.command = Some(vec!["/nonexistent/pager".into()]);
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        notify.webhook = Some(Secret::new(format!(
            "http://127.0.0.1:{port}/services/T0KEN-SECRET"
        )));
        assert!(!format!("{notify:?}").contains("T0KEN"));
        let error = post(notify.webhook.as_ref().unwrap().expose(), "{}".into())
            .await
            .unwrap_err();
        let error = crate::error_chain::error_chain(&error);
        assert!(
            !error.contains("T0KEN") && !error.contains("127.0.0.1"),
            "{error}"
        );
        send(&notify, &[failed("boom")]).await;
    }

    #[tokio::test]
    async fn the_webhook_gets_a_slack_compatible_post() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let n = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let mut notify = notify(&["capped"]);
        notify.webhook = Some(Secret::new(format!("http://127.0.0.1:{port}/hook")));
        send(
            &notify,
            &[from_event(
                "web",
                &Event::Capped {
                    at: crate::model::Capped::AtMax,
                    reason: "busy; capped at max 4".into(),
                },
            )],
        )
        .await;
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        let body: serde_json::Value =
            serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["text"], "pool web is capped: busy; capped at max 4");
    }
}
