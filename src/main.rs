//! The binary: parse, run, map the result to an exit code in one place.

use std::process::ExitCode;

use haproxy_autoscaler::surface::{app, cli::Cli, logging};

fn main() -> ExitCode {
    let cli = Cli::parse_strictly();
    logging::init(cli.quiet, cli.verbose);
    match app::main(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            app::print_error(&cli, &error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// mimalloc: a run allocates and frees many small strings and maps per server (the plan, the
/// state it carries, the rendered config); glibc's allocator was a quarter of a run's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
