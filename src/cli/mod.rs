//! The command line: parses arguments, loads configuration, calls the library, prints.
//!
//! Exit codes: 0 success; 1 a failure while running (store, I/O); 2 bad input or configuration
//! (the message names the file:line or key); 3 a scan that completed but left instances
//! pending (their fetch failed; the next run retries them); 4 a scan whose evidence collapsed
//! (no last words, or no memory series, for any of at least five analysed instances: a
//! configuration that reads nothing — the report says which source); 5 a scan whose alert
//! messages could not all be delivered (failed for good, or still waiting in the outbox); 6 a
//! scan that read some AWS targets but not others (the report covers the ones read and names
//! the others, whose window the next run reads again). A scan that could read none of its
//! targets prints its report too, and exits 1.
//!
//! `epitaph doctor` has its own: 0 every check passed (warnings allowed); 2 a check failed on
//! configuration (a name, a pattern, a dimension set, the IAM policy — the fix is printed); 1
//! the account or an API could not be reached (credentials, network, endpoint) and nothing is
//! misconfigured as far as could be checked.

//!
//! This file is the command line's shape (flags, commands, exit codes) and its dispatch;
//! `commands.rs` does each command.

mod commands;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use epitaph::config::Config;
use epitaph::error::Error;
use epitaph::sinks::report::Format;

/// Exit code when a scan finished but some instances stay pending.
pub(crate) const EXIT_PENDING: u8 = 3;
/// Exit code for bad input or configuration.
pub(crate) const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when a source gave no evidence for any instance (see `analysis::coverage`).
pub(crate) const EXIT_NO_EVIDENCE: u8 = 4;
/// Exit code when alert messages could not be delivered (see `summary.alerts_undelivered`).
pub(crate) const EXIT_ALERTS_UNDELIVERED: u8 = 5;
/// Exit code when some targets could be read and others not (see `summary.targets`).
pub(crate) const EXIT_SOME_TARGETS_FAILED: u8 = 6;

#[derive(Debug, Parser)]
#[command(
    name = "epitaph",
    version,
    about = "Why did my Auto Scaling instances die? Last words, OOM signatures, memory leaks — per deployment."
)]
pub struct Cli {
    /// Configuration file (default: ./epitaph.toml if it exists).
    #[arg(long, short, global = true, env = "EPITAPH_CONFIG")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "table")]
    format: Format,
    /// Log filter for stderr (error, warn, info, debug, or a tracing filter).
    #[arg(long, global = true, env = "EPITAPH_LOG", default_value = "warn")]
    log_level: String,
    /// Never use colour (colour is only used on a terminal anyway).
    #[arg(long, global = true, env = "NO_COLOR", value_parser = clap::builder::FalseyValueParser::new())]
    no_color: bool,
    /// AWS profile for the aws backends (overrides aws.profile).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// AWS region for the aws backends (overrides aws.region).
    #[arg(long, global = true)]
    region: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find terminated instances in a window, fetch their last words and memory, judge them.
    Scan {
        /// Window start: a duration back from now (24h) or a time (RFC 3339). Default: the end
        /// of the last complete run, else `scan.since`.
        #[arg(long)]
        since: Option<String>,
        /// Window end: a time or a duration back from now. Default: now (or `scan.until`).
        #[arg(long)]
        until: Option<String>,
        /// Fetch and analyse again instances already in the store.
        #[arg(long)]
        refresh: bool,
        /// A truncated export (a pagination token left in it) is an input error (exit 2, the
        /// file named, the report still printed), not a warning.
        #[arg(long)]
        strict: bool,
    },
    /// Write an evidence bundle: the window's terminations, the inventory, and each terminated
    /// instance's last words and memory series, in the folder layout the `file` backends read
    /// (a scan of `DIR/epitaph.toml` judges the same evidence offline), with DIR/manifest.json.
    /// Exit 2 when an input could not be read, 3 when other parts are missing (both named in
    /// the manifest), 4 when a source gave no evidence for any instance.
    Export {
        /// Window start: a duration back from now (7d) or a time (RFC 3339). Default
        /// `scan.since`.
        #[arg(long)]
        since: Option<String>,
        /// Window end: a time or a duration back from now. Default: now (or `scan.until`).
        #[arg(long)]
        until: Option<String>,
        /// The bundle's folder: created, or an existing empty one.
        #[arg(long)]
        out: PathBuf,
    },
    /// Everything known about one instance; fetched from the sources when not in the store.
    Instance {
        instance_id: String,
        /// Fetch from the sources even if the store knows the instance.
        #[arg(long)]
        refresh: bool,
    },
    /// Work with the signature library.
    Signatures {
        #[command(subcommand)]
        command: SignaturesCommand,
    },
    /// Work with V8 heap snapshots (`.heapsnapshot`).
    Heap {
        #[command(subcommand)]
        command: HeapCommand,
    },
    /// Judge one memory series: CSV `timestamp,value` from a file or `-` (stdin).
    Leak {
        file: String,
        /// The value at which memory is exhausted (enables projected_exhaustion).
        #[arg(long)]
        limit: Option<f64>,
    },
    /// Write a deterministic simulated fleet, its config and its truth.
    Simulate {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        fleet: FleetArgs,
        /// End of the simulated window (RFC 3339).
        #[arg(long, default_value = epitaph::simulate::DEFAULT_END)]
        end: String,
    },
    /// Simulate a fleet into a temporary folder and scan it with a fresh SQLite state.
    Demo {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Keep the fleet, config and state in this folder instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Run the service: scans on `serve.schedule`, alert delivery, and the HTTP API on
    /// `serve.listen` (see docs/openapi.yaml).
    Serve,
    /// Probe what the configuration points at (the real account for `aws` sources, the files
    /// for `file` ones) and print a checklist: PASS / WARN / FAIL / SKIP, each failure with its
    /// fix. `--format json` prints `{"checks": [{"id", "status", "detail", "fix"}], "ok",
    /// "exit_code"}`.
    Doctor,
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 when the service answers `GET /healthz` with 200, else 1: the container image's
    /// health check. The address is `serve.listen` (an unspecified address is asked on
    /// loopback), or `--url`.
    Healthcheck {
        /// The full URL to ask instead (`http://127.0.0.1:9464/healthz`).
        #[arg(long)]
        url: Option<String>,
    },
}

/// The shape of a simulated fleet.
#[derive(Debug, clap::Args)]
struct FleetArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Auto Scaling groups.
    #[arg(long, default_value_t = 6)]
    asgs: usize,
    /// Terminated instances in all.
    #[arg(long, default_value_t = 60)]
    instances: usize,
    /// Instances still running in each current deployment (early warning projects the leaking
    /// ones' deaths).
    #[arg(long, default_value_t = epitaph::simulate::DEFAULT_RUNNING)]
    running: usize,
}

#[derive(Debug, Subcommand)]
enum SignaturesCommand {
    /// Print one JSON object per matching line of a file or `-` (stdin).
    Match {
        file: String,
        /// A signature file to merge over the built-in library (default: `signatures.extra`).
        #[arg(long)]
        signatures: Option<PathBuf>,
    },
    /// List the signatures in use.
    List,
}

#[derive(Debug, Subcommand)]
enum HeapCommand {
    /// Leak suspects between snapshots of one process, memlab's method: BASELINE before the
    /// suspect action, TARGET after it, optional FINAL after more of it (or after undoing
    /// it). Objects allocated after the baseline and alive in the last snapshot, grouped by
    /// constructor, with what they retain and the shortest retainer path from the GC root.
    /// Exit 0 with no suspect, 3 with suspects.
    Diff {
        baseline: PathBuf,
        target: PathBuf,
        #[arg(value_name = "FINAL")]
        last: Option<PathBuf>,
        /// How many suspects to list.
        #[arg(long, default_value_t = epitaph::analysis::heap::DEFAULT_TOP)]
        top: usize,
        /// Also keep the result with this deployment in the state store (`--config`): the HTML
        /// report shows it in the deployment's section.
        #[arg(long, value_name = "DEPLOYMENT")]
        attach: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Report every problem in the configuration at once.
    Check,
    /// Print the configuration's JSON Schema (draft 2020-12, derived from the config types,
    /// each key's description from its doc comment): for editors and CI linting of
    /// `epitaph.toml` (e.g. taplo, or the Even Better TOML extension). Reads no config file.
    Schema,
}

/// Parses arguments, runs, and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("epitaph: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(e) => {
            eprintln!("epitaph: {e:#}");
            let bad_input = e
                .chain()
                .any(|c| c.downcast_ref::<Error>().is_some_and(Error::is_bad_input));
            ExitCode::from(if bad_input { EXIT_BAD_INPUT } else { 1 })
        }
    }
}

/// Exit status when the reader of stdout went away (`epitaph config schema | head`): what a
/// process killed by SIGPIPE reports to a shell (128 + 13), without a message — Rust ignores
/// SIGPIPE, so the write fails with `EPIPE` instead.
const EXIT_BROKEN_PIPE: u8 = 141;

/// Whether an error is a write to a closed stdout: a bare `io::Error` (what `writeln!(out, …)?`
/// returns), not one inside a source's or store's error — a connection that broke while
/// fetching evidence is an error to report, not a reader that left.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON when a machine reads stderr (cron, systemd, containers); plain text on a terminal.
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

/// The global flags every command shares.
struct Globals {
    config: Option<PathBuf>,
    format: Format,
    color: bool,
    profile: Option<String>,
    region: Option<String>,
}

impl Globals {
    /// The config from `--config`, else `./epitaph.toml`, else (when `required` is false)
    /// defaults; `--profile` and `--region` over it.
    fn load(&self, required: bool) -> anyhow::Result<Config> {
        let mut cfg = commands::load_config(self.config.as_deref(), required)?;
        if let Some(p) = &self.profile {
            cfg.aws.profile = Some(p.clone());
        }
        if let Some(r) = &self.region {
            cfg.aws.region = Some(r.clone());
        }
        Ok(cfg)
    }

    fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = Globals {
        config: cli.config,
        format: cli.format,
        color: !cli.no_color && std::io::stdout().is_terminal(),
        profile: cli.profile,
        region: cli.region,
    };
    match cli.command {
        Command::Scan {
            since,
            until,
            refresh,
            strict,
        } => commands::scan(&g, since.as_deref(), until.as_deref(), refresh, strict).await,
        Command::Export { since, until, out } => {
            commands::export(&g, since.as_deref(), until.as_deref(), out).await
        }
        Command::Instance {
            instance_id,
            refresh,
        } => commands::instance(&g, &instance_id, refresh).await,
        Command::Signatures {
            command: SignaturesCommand::Match { file, signatures },
        } => commands::signatures_match(&g, &file, signatures.as_deref()),
        Command::Signatures {
            command: SignaturesCommand::List,
        } => commands::signatures_list(&g),
        Command::Heap {
            command:
                HeapCommand::Diff {
                    baseline,
                    target,
                    last,
                    top,
                    attach,
                },
        } => {
            commands::heap_diff(
                &g,
                &baseline,
                &target,
                last.as_ref(),
                top,
                attach.as_deref(),
            )
            .await
        }
        Command::Healthcheck { url } => commands::healthcheck(&g, url).await,
        Command::Leak { file, limit } => commands::leak(&file, limit),
        Command::Simulate { out, fleet, end } => commands::simulate_fleet(&out, &fleet, &end),
        Command::Demo { fleet, keep } => commands::demo(&g, &fleet, keep.as_ref()).await,
        Command::Serve => commands::serve(&g).await,
        Command::Doctor => commands::doctor(&g).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => commands::config_check(&g),
        Command::Config {
            command: ConfigCommand::Schema,
        } => commands::config_schema(),
    }
}
