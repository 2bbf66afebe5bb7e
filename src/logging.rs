//! Logs go to stderr; `-q`, `-v` and `RUST_LOG` choose how much. Every line has the one
//! diagnostic style of the tool's own messages: `error: `, `warning: `, `info: `, `debug: `.
//!
//! Secrets never reach the log at any level (invariant 10): the AWS SDK's own INFO, DEBUG and
//! TRACE lines print the access key id (credential loading, request signing), so events from the
//! SDK's crates (`aws_*`) below WARN are dropped whatever `RUST_LOG` asks for.

use std::fmt;

use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// Installs the stderr logger. `RUST_LOG`, when set, wins over the flags, except for the AWS
/// SDK's detail (see the module doc).
pub fn init(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        // The AWS SDK warns about look-ups it then recovers from (for example IMDS outside EC2);
        // the run reports what matters itself, so the SDK's own warnings wait for `-v`.
        (false, 0) => "error,haproxy_autoscaler=warn",
        (false, 1) => "warn,haproxy_autoscaler=info",
        (false, _) => "info,haproxy_autoscaler=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| Escaping(std::io::stderr()))
        .with_ansi(false)
        .event_format(Plain)
        .with_filter(filter)
        .with_filter(filter_fn(may_carry_no_secret));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// A log line as the tool's own messages read: `warning: the message`, nothing before it.
struct Plain;

/// The word a line starts with at `level`.
fn word(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{}: ", word(*event.metadata().level()))?;
        context
            .field_format()
            .format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Stderr, with what a log line carries from outside (a command's output, an instance id) made
/// safe for a terminal (issue 29, class 4): control and format characters escaped, but for
/// newlines, tabs and ESC (the logger's own colours; it escapes ESC in what it is given).
struct Escaping<W>(W);

impl<W: std::io::Write> std::io::Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let safe = crate::model::text::escaped_except(&text, &['\n', '\t', '\u{1b}']);
        self.0.write_all(safe.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// False for the AWS SDK's events below WARN, which may name credentials.
fn may_carry_no_secret(metadata: &Metadata<'_>) -> bool {
    !(metadata.target().starts_with("aws") && *metadata.level() > tracing::Level::WARN)
}

#[cfg(test)]
mod tests {
    /// Issue 29, class 4: NUL, SOH, CR, DEL, C1 and bidi controls in a log line reach the
    /// terminal escaped; newlines, tabs and the logger's own ESC pass.
    #[test]
    fn a_log_line_reaches_the_terminal_escaped() {
        use std::io::Write;
        let mut out = super::Escaping(Vec::new());
        out.write_all("a\0b\u{1}c\rd\u{7f}e\u{85}f\u{202e}g\u{1b}[1m\th\n".as_bytes())
            .unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "a\\u{0}b\\u{1}c\\rd\\u{7f}e\\u{85}f\\u{202e}g\u{1b}[1m\th\n"
        );
    }

    use super::*;

    /// Issue 32: a log line reads as the tool's own messages do: `warning: `, no padding, no
    /// level in capitals, no target.
    #[test]
    fn a_log_line_has_the_tools_one_diagnostic_style() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .event_format(Plain),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("pool `web`: no metric this run, holding: {}", "exit 3");
            tracing::error!("cannot write metrics_file");
            tracing::info!("observe: 12ms");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "warning: pool `web`: no metric this run, holding: exit 3
error: cannot write metrics_file
info: observe: 12ms
"
        );
    }

    #[test]
    fn the_sdk_detail_is_dropped_at_every_level_below_warn() {
        use tracing::Level;
        use tracing::callsite::Identifier;
        use tracing::field::FieldSet;
        use tracing::metadata::Kind;
        struct Callsite;
        impl tracing::Callsite for Callsite {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CALLSITE: Callsite = Callsite;
        let meta = |target: &'static str, level: Level| {
            Metadata::new(
                "event",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&CALLSITE)),
                Kind::EVENT,
            )
        };
        for level in [Level::INFO, Level::DEBUG, Level::TRACE] {
            for target in ["aws_config::profile", "aws_sigv4", "aws_smithy_runtime"] {
                assert!(
                    !may_carry_no_secret(&meta(target, level)),
                    "{target} {level}"
                );
            }
            assert!(may_carry_no_secret(&meta("haproxy_autoscaler::app", level)));
        }
        assert!(may_carry_no_secret(&meta("aws_config", Level::WARN)));
    }
}
