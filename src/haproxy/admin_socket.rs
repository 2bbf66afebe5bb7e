//! HAProxy's runtime API on the admin stats socket: read `show stat` / `show info`, drain a
//! server. Also reads the CSV stats page when only `stats_url` is configured (it has no runtime
//! API: no pid, so a reload is detected by counters going down, and drains happen through the
//! rendered config only).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::StatsSource;
use crate::haproxy::stats::{self, StatsError};
use crate::http;
use crate::model::{Info, Row};

/// A runtime API problem.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot talk to HAProxy's stats socket `{socket}`")]
    Io {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HAProxy's stats socket `{socket}` did not answer `{command}` within {}ms", after.as_millis())]
    Timeout {
        socket: String,
        command: String,
        after: Duration,
    },
    #[error("unusable stats from `{source_name}`")]
    Stats {
        source_name: String,
        #[source]
        source: StatsError,
    },
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("HAProxy refused `{command}`: {answer}")]
    Refused { command: String, answer: String },
}

/// Sends one command to a stats socket (a unix path, or `ipv4@HOST:PORT` / `HOST:PORT`).
pub(crate) async fn send(
    socket: &str,
    command: &str,
    timeout: Duration,
) -> Result<String, RuntimeError> {
    let timed_out = || RuntimeError::Timeout {
        socket: socket.to_owned(),
        command: command.to_owned(),
        after: timeout,
    };
    let io = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::TimedOut => timed_out(),
        // As `show stat`'s parser words it, which a cut answer reached before.
        std::io::ErrorKind::FileTooLarge => RuntimeError::Stats {
            source_name: socket.to_owned(),
            source: StatsError::TooLarge(stats::MAX_STATS_BYTES + 1),
        },
        _ => RuntimeError::Io {
            socket: socket.to_owned(),
            source,
        },
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let exchange = async {
        let tcp = socket
            .strip_prefix("ipv4@")
            .or_else(|| (!socket.starts_with('/') && socket.contains(':')).then_some(socket));
        let answer = if let Some(address) = tcp {
            let stream = tokio::net::TcpStream::connect(address).await.map_err(io)?;
            one_command(stream, command, deadline).await.map_err(io)?
        } else {
            let stream = tokio::net::UnixStream::connect(Path::new(socket))
                .await
                .map_err(io)?;
            one_command(stream, command, deadline).await.map_err(io)?
        };
        Ok(answer)
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out())?
}

/// Writes one command, half-closes (HAProxy then answers and closes), reads the answer.
async fn one_command(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    command: &str,
    deadline: tokio::time::Instant,
) -> std::io::Result<String> {
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    stream.shutdown().await?;
    let answer =
        crate::exchange::read_stream(stream, stats::MAX_STATS_BYTES as u64, deadline).await?;
    String::from_utf8(answer)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}

/// The running worker's `show info`.
pub(crate) async fn read_info(socket: &str, timeout: Duration) -> Result<Info, RuntimeError> {
    let text = send(socket, "show info", timeout).await?;
    stats::parse_show_info(&text).map_err(|source| RuntimeError::Stats {
        source_name: socket.to_owned(),
        source,
    })
}

/// Reads the worker's info and every server and backend line.
pub async fn read_stats(
    source: &StatsSource,
    timeout: Duration,
) -> Result<(Info, Vec<Row>), RuntimeError> {
    let (name, info, text) = match source {
        StatsSource::Socket(socket) => {
            let info = read_info(socket, timeout).await?;
            (
                socket.clone(),
                info,
                send(socket, "show stat", timeout).await?,
            )
        }
        StatsSource::Url(url) => {
            let response = http::get(url, timeout).await?;
            if response.status != 200 {
                return Err(http::HttpError::Status {
                    url: url.clone(),
                    status: response.status.to_string(),
                }
                .into());
            }
            // The stats page has no pid or uptime: counters going down reveal a reload.
            (
                url.clone(),
                Info {
                    pid: 0,
                    uptime_s: 0,
                    version: None,
                },
                response.body,
            )
        }
    };
    let rows = stats::parse_show_stat(&text).map_err(|source| RuntimeError::Stats {
        source_name: name,
        source,
    })?;
    Ok((info, rows))
}

/// `set server BACKEND/SERVER state drain`.
pub async fn drain(
    socket: &str,
    backend: &str,
    server: &str,
    timeout: Duration,
) -> Result<(), RuntimeError> {
    set_state(socket, &format!("{backend}/{server}"), "drain", timeout).await
}

/// `set server BACKEND/SERVER state STATE` (`ready`, `drain` or `maint`).
pub(crate) async fn set_state(
    socket: &str,
    server: &str,
    state: &str,
    timeout: Duration,
) -> Result<(), RuntimeError> {
    let command = format!("set server {server} state {state}");
    let answer = send(socket, &command, timeout).await?;
    // HAProxy answers nothing (or a blank line) on success, and a message otherwise.
    if answer.trim().is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::Refused {
            command,
            answer: answer.trim().to_owned(),
        })
    }
}
