//! Logs go to stderr; `-q`, `-v` and `RUST_LOG` choose how much.

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger. `RUST_LOG`, when set, wins over the flags (and is the operator's
/// own choice to see what the AWS SDK logs, access key ids included).
pub fn init(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        // The AWS SDK warns about look-ups it then recovers from (for example IMDS outside EC2);
        // the run reports what matters itself, so the SDK's own warnings wait for `-v`.
        (false, 0) => "error,haproxy_autoscaler=warn",
        (false, 1) => "warn,haproxy_autoscaler=info",
        // aws_config's INFO lines about credentials print the access key id (invariant 10).
        (false, _) => "info,aws_config=warn,haproxy_autoscaler=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}
