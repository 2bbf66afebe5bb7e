//! Raw command-line flags, as clap parses them.
//!
//! These structs hold what the operator typed and do no I/O; [`crate::config::Config::from_cli`]
//! turns them, together with the config file, into the validated configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default location of the config file.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/haproxy-autoscaler/config.toml";

/// Keep HAProxy backends in sync with cloud instances, one run at a time (run it from cron).
#[derive(Debug, Parser)]
#[command(name = "haproxy-autoscaler", version, about, long_about = None)]
#[command(
    after_help = "Without a command: one real run, which may install haproxy.cfg, reload \
HAProxy, and launch or terminate instances; --plan shows what it would do and changes nothing.

Exit codes: 0 ok, 1 run failed, 2 bad usage or config, 3 saved plan refused (`apply FILE`: the \
world changed since), \
75 nothing done, not this run's turn (another run holds the lock, another node of a \
shared state committed first, or the shared state is unreachable), 4 changes pending (--plan \
--detailed-exitcode)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Config file (TOML) [default: /etc/haproxy-autoscaler/config.toml].
    #[arg(
        long,
        env = "HAPROXY_AUTOSCALER_CONFIG",
        value_name = "PATH",
        global = true
    )]
    pub config: Option<PathBuf>,

    /// Print what a run would do, with a diff of haproxy.cfg, and change nothing.
    #[arg(long)]
    pub plan: bool,

    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,

    /// With --plan: also write the plan and what it was made from into FILE, for `apply FILE`.
    #[arg(long, value_name = "FILE", requires = "plan")]
    pub out: Option<PathBuf>,

    /// With --plan: exit 4 when changes are pending, 0 when there is nothing to do.
    #[arg(long, requires = "plan")]
    pub detailed_exitcode: bool,

    /// Print only errors.
    #[arg(short, long, conflicts_with = "verbose", global = true)]
    pub quiet: bool,

    /// Log more detail to stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// The global flags each command that ignores them refuses, when typed on its command line (the
/// environment's `HAPROXY_AUTOSCALER_CONFIG` is not refused: it is set for every command).
const IGNORED: [(&str, &[&str]); 5] = [
    ("completions", &["config", "format"]),
    ("man", &["config", "format"]),
    ("drain", &["format"]),
    ("maintenance", &["format"]),
    ("protect", &["format"]),
];

impl Cli {
    /// The command line, parsed; a flag the command would ignore is a usage error (exit 2),
    /// not silently dropped.
    pub fn parse_strictly() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Cli::command();
        // An empty HAPROXY_AUTOSCALER_CONFIG (`Environment=HAPROXY_AUTOSCALER_CONFIG=` in a
        // unit) is no config path: the default, not a usage error on every command.
        if std::env::var_os("HAPROXY_AUTOSCALER_CONFIG").is_some_and(|value| value.is_empty()) {
            command = command.mut_arg("config", |arg| arg.env(None::<&str>));
        }
        let matches = command.get_matches();
        if let Some(error) = ignored_flag(&matches) {
            error.exit();
        }
        Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// The usage error for a flag typed on the command line of a command that ignores it.
fn ignored_flag(matches: &clap::ArgMatches) -> Option<clap::Error> {
    use clap::CommandFactory;
    use clap::parser::ValueSource;
    let (name, sub) = matches.subcommand()?;
    if name == "apply" && matches.get_flag("plan") {
        return Some(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "`apply FILE` carries out a saved plan; to look at it first, read FILE (its `plan`), or make a new one with `--plan --out FILE`: remove --plan",
        ));
    }
    let (_, flags) = IGNORED.iter().find(|(command, _)| *command == name)?;
    let flag = flags
        .iter()
        .find(|flag| sub.value_source(flag) == Some(ValueSource::CommandLine))?;
    Some(Cli::command().error(
        clap::error::ErrorKind::ArgumentConflict,
        format!("`{name}` does not use --{flag}; remove it"),
    ))
}

/// What to do instead of reconciling once.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a traffic trace (`t_seconds,load` CSV) through a pool's scaling policy, with a
    /// simulated cloud and HAProxy, and report what it served and cost; changes nothing.
    Simulate(SimulateArgs),
    /// Carry out a plan saved by `--plan --out FILE`, exactly, or refuse (exit 3) if the world
    /// changed since.
    ///
    /// The world is the config, the state, the installed haproxy.cfg and every pool's instances;
    /// a plan is applied within an hour. A refused plan changes nothing.
    Apply {
        /// The saved plan.
        file: PathBuf,
    },
    /// Every managed server as HAProxy sees it, joined with the state file; changes nothing.
    Status,
    /// The last decisions of each scaling pool, with their reasons; changes nothing.
    ///
    /// From the state: when, on which node, from → to, what was launched, drained and terminated
    /// or why the pool held, the metric and its age, and the policy's reason.
    History(HistoryArgs),
    /// Validate the config and the template, render haproxy.cfg against the current discovery
    /// and run check_command on it, as a run would; report every problem; changes nothing.
    Check(CheckArgs),
    /// Write a commented example config and the default template, to edit before the first
    /// run; never overwrites a file.
    Init(InitArgs),
    /// Print a completion script for a shell (for example into
    /// /usr/share/bash-completion/completions/haproxy-autoscaler).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; `man -l -` reads it from stdin), or write it and one page per
    /// command into a folder.
    Man {
        /// Write haproxy-autoscaler.1 and haproxy-autoscaler-COMMAND.1 into this folder (for
        /// example /usr/share/man/man1) instead of printing the main page.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Add, remove or list the hosts of a static pool (its `[pool.static] dir`).
    #[command(subcommand)]
    Hosts(HostsCommand),
    #[command(flatten)]
    Verb(Verb),
}

/// The operator's verbs for one server: recorded in the state (every later run keeps them) and
/// told to this node's HAProxy at once. Each takes the run lock.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Drain a server of a scaling pool now; the next runs terminate it.
    ///
    /// No new traffic at once; the next runs terminate it once its drain is over (`drain_s`, or
    /// no session left), and the policy replaces it if the pool needs it. Refused for a server
    /// this tool may not terminate (protected, or not tagged for the pool).
    Drain {
        /// The server, as POOL/SERVER (SERVER: its name in haproxy.cfg, the instance id).
        #[arg(value_name = "POOL/SERVER")]
        target: String,
    },
    /// Take a server out of traffic (on) until you put it back (off).
    ///
    /// Meanwhile it is rendered disabled, and never drained, replaced nor counted as capacity.
    Maintenance {
        #[arg(value_name = "POOL/SERVER")]
        target: String,
        #[arg(value_enum)]
        switch: OnOff,
    },
    /// Protect a server (on) from every drain and termination; off lifts it.
    ///
    /// A scale-down's and a replacement's, as the tag `haproxy-autoscaler:protected=true` does.
    Protect {
        #[arg(value_name = "POOL/SERVER")]
        target: String,
        #[arg(value_enum)]
        switch: OnOff,
    },
}

/// A switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// `hosts`' subcommands. Each takes the run lock: a `hosts` command and a run never interleave.
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Add host NAME (the server's name in haproxy.cfg) at ADDRESS:PORT.
    Add {
        /// The server's name: letters, digits, `-`, `_`, `.` and `:`.
        name: String,
        /// Where HAProxy reaches it: an IP address or host name and a port (`[v6]:PORT`).
        #[arg(value_name = "ADDRESS:PORT")]
        address: String,
        /// The static pool (needed when the config has several).
        #[arg(long, value_name = "P")]
        pool: Option<String>,
    },
    /// Remove host NAME (with --drain, once its sessions are over).
    Remove {
        /// The host's name, as `hosts list` shows it.
        name: String,
        /// First drain it through the runtime API (no new traffic) and wait until HAProxy shows
        /// no session on it, then remove it: the next run takes it out without a reload.
        #[arg(long)]
        drain: bool,
        /// With --drain: remove it after this many seconds even if sessions remain.
        #[arg(long, value_name = "S", default_value_t = 120, requires = "drain")]
        drain_timeout_s: u64,
        /// The static pool (needed when the config has several).
        #[arg(long, value_name = "P")]
        pool: Option<String>,
    },
    /// List the hosts of every static pool (or of one).
    List {
        /// Only this static pool's hosts.
        #[arg(long, value_name = "P")]
        pool: Option<String>,
    },
}

/// `history`'s flags.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this scaling pool's decisions.
    #[arg(long, value_name = "P")]
    pub pool: Option<String>,
    /// How many decisions per pool, the newest.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub last: usize,
}

/// `check`'s flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Render against no instance: contact no cloud, no HAProxy, read no state.
    #[arg(long)]
    pub offline: bool,
}

/// `init`'s flags.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to write config.toml and haproxy.cfg.hbs into, created if missing [default:
    /// --config's folder and file name, /etc/haproxy-autoscaler/config.toml].
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
}

/// `simulate`'s flags.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The trace: a CSV with the header `t_seconds,load` (requests per second per interval).
    #[arg(long, value_name = "FILE.csv")]
    pub trace: PathBuf,

    /// The pool to simulate (needed when the config has several scaling pools).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,

    /// Requests per second one server serves [default: the scaled trace's peak over 50].
    #[arg(long, value_name = "R", allow_hyphen_values = true)]
    pub capacity: Option<f64>,

    /// Seconds from a launch to the new server taking traffic (its warm-up and readiness
    /// check included).
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub boot_s: u64,

    /// Seconds between two runs of the reconciler (cron: 60).
    #[arg(long, value_name = "I", default_value_t = 60)]
    pub interval_s: u64,

    /// Multiply the trace's loads by this.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1.0,
        allow_hyphen_values = true
    )]
    pub scale: f64,

    /// Draw load, capacity, servers and scale actions over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// One-pool discovery mode without a config file, as haproxy-autoscale did it.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Without a config file (one pool, discovery only)")]
pub struct DiscoveryArgs {
    /// Discover instances in this security group (name or sg- id).
    #[arg(long, value_name = "GROUP")]
    pub security_group: Option<String>,

    /// Discover instances launched from this image.
    #[arg(long, value_name = "AMI")]
    pub image_id: Option<String>,

    /// Discover instances carrying this tag (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Handlebars template that renders haproxy.cfg.
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,

    /// Where the rendered haproxy.cfg is installed.
    #[arg(long, value_name = "PATH")]
    pub haproxy_config: Option<PathBuf>,

    /// Command that validates a candidate config; `{config}` is replaced by its path.
    #[arg(long, value_name = "CMD")]
    pub check_command: Option<String>,

    /// Command that reloads HAProxy (split like a shell would, but never run through one).
    #[arg(long, value_name = "CMD")]
    pub reload_command: Option<String>,

    /// Port the backends listen on.
    #[arg(long)]
    pub port: Option<u16>,

    /// State file (its lock is the same path plus `.lock`).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// AWS region.
    #[arg(long)]
    pub region: Option<String>,

    /// AWS endpoint URL (for test clouds such as moto).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

impl DiscoveryArgs {
    /// True when any discovery filter was given, which selects the config-less mode.
    pub fn selects_pool(&self) -> bool {
        self.security_group.is_some() || self.image_id.is_some() || !self.tags.is_empty()
    }

    /// True when any of these flags was given at all.
    pub fn any(&self) -> bool {
        !self.given().is_empty()
    }

    /// The flags of this mode that were given, as typed.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--security-group", self.security_group.is_some()),
            ("--image-id", self.image_id.is_some()),
            ("--tag", !self.tags.is_empty()),
            ("--template", self.template.is_some()),
            ("--haproxy-config", self.haproxy_config.is_some()),
            ("--check-command", self.check_command.is_some()),
            ("--reload-command", self.reload_command.is_some()),
            ("--port", self.port.is_some()),
            ("--state", self.state.is_some()),
            ("--region", self.region.is_some()),
            ("--endpoint-url", self.endpoint_url.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Issue 32: `completions` and `man` refuse the global flags they would ignore, typed
    /// before or after the command; the other commands take them.
    #[test]
    fn a_flag_a_command_ignores_is_refused() {
        let refused = |args: &[&str]| {
            let matches = Cli::command()
                .try_get_matches_from(
                    std::iter::once("haproxy-autoscaler").chain(args.iter().copied()),
                )
                .unwrap();
            ignored_flag(&matches).map(|error| error.to_string())
        };
        let said = refused(&["completions", "bash", "--config", "/x.toml"]).unwrap();
        assert!(
            said.contains("`completions` does not use --config"),
            "{said}"
        );
        let said = refused(&["--format", "json", "man"]).unwrap();
        assert!(said.contains("`man` does not use --format"), "{said}");
        assert_eq!(refused(&["completions", "bash"]), None);
        assert_eq!(
            refused(&["check", "--config", "/x.toml", "--format", "json"]),
            None
        );
        assert_eq!(refused(&["--config", "/x.toml", "--plan"]), None);
        let said = refused(&["--plan", "apply", "plan.json"]).unwrap();
        assert!(said.contains("remove --plan"), "{said}");
        assert_eq!(refused(&["apply", "plan.json"]), None);
        assert!(Cli::try_parse_from(["haproxy-autoscaler", "--out", "p.json"]).is_err());
    }

    #[test]
    fn detailed_exitcode_needs_plan() {
        let error = Cli::try_parse_from(["haproxy-autoscaler", "--detailed-exitcode"]).unwrap_err();
        assert!(error.to_string().contains("--plan"), "{error}");
    }
}
