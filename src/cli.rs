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

use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use epitaph::analysis::leak;
use epitaph::analysis::signatures::SignatureLibrary;
use epitaph::config::Config;
use epitaph::error::Error;
use epitaph::pipeline::{
    load_signature_file, load_signatures, ExportOptions, Pipeline, ScanOptions,
};
use epitaph::simulate::{simulate, SimOptions};
use epitaph::sinks::report::{self, Format};
use epitaph::timefmt;

/// Exit code when a scan finished but some instances stay pending.
const EXIT_PENDING: u8 = 3;
/// Exit code for bad input or configuration.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when a source gave no evidence for any instance (see `analysis::coverage`).
const EXIT_NO_EVIDENCE: u8 = 4;
/// Exit code when alert messages could not be delivered (see `summary.alerts_undelivered`).
const EXIT_ALERTS_UNDELIVERED: u8 = 5;
/// Exit code when some targets could be read and others not (see `summary.targets`).
const EXIT_SOME_TARGETS_FAILED: u8 = 6;

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
}

/// How long `epitaph healthcheck` waits for the answer.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

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
        Err(e) => {
            eprintln!("epitaph: {e:#}");
            let bad_input = e
                .chain()
                .any(|c| c.downcast_ref::<Error>().is_some_and(Error::is_bad_input));
            ExitCode::from(if bad_input { EXIT_BAD_INPUT } else { 1 })
        }
    }
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let color = !cli.no_color && std::io::stdout().is_terminal();
    let aws_flags = (cli.profile.clone(), cli.region.clone());
    let load_config = |path: Option<&Path>, required: bool| -> anyhow::Result<Config> {
        let mut cfg = load_config(path, required)?;
        if let Some(p) = &aws_flags.0 {
            cfg.aws.profile = Some(p.clone());
        }
        if let Some(r) = &aws_flags.1 {
            cfg.aws.region = Some(r.clone());
        }
        Ok(cfg)
    };
    match cli.command {
        Command::Scan {
            ref since,
            ref until,
            refresh,
            strict,
        } => {
            let cfg = load_config(cli.config.as_deref(), true)?;
            let (since, until) = window_flags(since.as_deref(), until.as_deref())?;
            let opts = ScanOptions {
                since,
                until,
                refresh,
                progress: true,
                strict,
            };
            scan(cfg, &opts, cli.format, color).await
        }
        Command::Export {
            ref since,
            ref until,
            ref out,
        } => {
            let cfg = load_config(cli.config.as_deref(), true)?;
            let (since, until) = window_flags(since.as_deref(), until.as_deref())?;
            let opts = ExportOptions {
                since,
                until,
                out: out.clone(),
            };
            export(cfg, &opts, cli.format).await
        }
        Command::Instance {
            ref instance_id,
            refresh,
        } => {
            if !epitaph::server::is_instance_id(instance_id) {
                return Err(Error::input(
                    "INSTANCE_ID",
                    format!(
                        "`{}` is not an EC2 instance id (i- followed by 8 or 17 hex digits)",
                        timefmt::truncate(instance_id, 40)
                    ),
                )
                .into());
            }
            let cfg = load_config(cli.config.as_deref(), true)?;
            let pipeline = build_pipeline(cfg).await?;
            let inv = pipeline.investigate(instance_id, refresh).await?;
            print!("{}", report::render_investigation(&inv, cli.format, color));
            Ok(ExitCode::SUCCESS)
        }
        Command::Signatures {
            command:
                SignaturesCommand::Match {
                    ref file,
                    ref signatures,
                },
        } => {
            let lib = match signatures {
                Some(p) => load_signature_file(p)?,
                None => match load_config(cli.config.as_deref(), false) {
                    Ok(cfg) => signature_library(&cfg)?,
                    Err(_) if cli.config.is_none() => SignatureLibrary::default_library()?,
                    Err(e) => return Err(e),
                },
            };
            signatures_match(&lib, file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Signatures {
            command: SignaturesCommand::List,
        } => {
            let cfg = load_config(cli.config.as_deref(), false)?;
            let lib = signature_library(&cfg)?;
            for s in lib.signatures() {
                println!(
                    "{:<28} {:<11} {:<6} {}",
                    s.spec.id,
                    s.spec.runtime,
                    s.spec.kind.as_str(),
                    s.spec.explanation
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Heap {
            command:
                HeapCommand::Diff {
                    ref baseline,
                    ref target,
                    ref last,
                    top,
                    ref attach,
                },
        } => {
            if matches!(cli.format, Format::Html) {
                return Err(
                    Error::input("--format", "heap diff prints table, markdown or json").into(),
                );
            }
            // Earlier snapshots are digested and dropped: only the last is held in full.
            use epitaph::analysis::heap::{diff_digested, SnapshotDigest};
            use epitaph::sources::heapsnapshot::read;
            let mut paths: Vec<&PathBuf> = vec![baseline, target];
            paths.extend(last);
            let final_path = paths.pop().expect("two or three paths");
            let mut earlier = Vec::new();
            for path in paths {
                earlier.push(SnapshotDigest::of(&read(path)?));
            }
            let d = diff_digested(&earlier, &read(final_path)?, top);
            print!("{}", epitaph::sinks::heap::render(&d, cli.format));
            if let Some(deployment) = attach {
                let cfg = load_config(cli.config.as_deref(), true)?;
                let files = [Some(baseline), Some(target), last.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|p| p.display().to_string())
                    .collect();
                let state =
                    epitaph::pipeline::attach_heap_diff(&cfg, deployment, files, d.clone()).await?;
                eprintln!(
                    "epitaph: heap diff attached to {deployment} in {state} (shown in its section of the HTML report)"
                );
            }
            Ok(if d.suspects.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Healthcheck { ref url } => {
            let url = match url {
                Some(u) => u.clone(),
                None => {
                    let cfg = load_config(cli.config.as_deref(), false)?;
                    let mut addr: std::net::SocketAddr = cfg.serve.listen.parse().map_err(|e| {
                        Error::input("serve.listen", format!("`{}`: {e}", cfg.serve.listen))
                    })?;
                    if addr.ip().is_unspecified() {
                        addr.set_ip(if addr.is_ipv4() {
                            std::net::Ipv4Addr::LOCALHOST.into()
                        } else {
                            std::net::Ipv6Addr::LOCALHOST.into()
                        });
                    }
                    format!("http://{addr}/healthz")
                }
            };
            let client = reqwest::Client::builder()
                .timeout(HEALTHCHECK_TIMEOUT)
                .build()
                .context("HTTP client")?;
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
                Ok(r) => {
                    eprintln!("epitaph: {url} answered {}", r.status());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    eprintln!("epitaph: {url}: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Leak { ref file, limit } => {
            let points = read_series(file)?;
            let a = leak::assess(&points, limit);
            println!("{}", serde_json::to_string(&a)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            ref out,
            fleet:
                FleetArgs {
                    seed,
                    asgs,
                    instances,
                    running,
                },
            ref end,
        } => {
            let end = timefmt::parse_instant(end).map_err(|e| Error::input("--end", e))?;
            let opts = SimOptions {
                seed,
                asgs,
                instances,
                running,
                end,
            };
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            let truth = simulate(out, &opts)?;
            eprintln!(
                "wrote {} terminated and {} running instances in {} deployments to {} (config: epitaph.toml, truth: truth.json)",
                truth.instances.len(),
                truth.running.len(),
                truth.deployments.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            fleet:
                FleetArgs {
                    seed,
                    asgs,
                    instances,
                    running,
                },
            ref keep,
        } => {
            let temp;
            let dir = match keep {
                Some(d) => d.clone(),
                None => {
                    temp = tempfile::tempdir().context("creating a temporary folder")?;
                    temp.path().to_path_buf()
                }
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let opts = SimOptions {
                seed,
                asgs,
                instances,
                running,
                ..Default::default()
            };
            simulate(&dir, &opts)?;
            let cfg = Config::load(Some(&dir.join("epitaph.toml")))?;
            if keep.is_none() {
                eprintln!("epitaph demo: simulated {instances} terminations in {asgs} groups (seed {seed}); scanning with a fresh SQLite state\n");
            }
            scan(
                cfg,
                &ScanOptions {
                    progress: true,
                    ..Default::default()
                },
                cli.format,
                color,
            )
            .await
        }
        Command::Serve => {
            let cfg = load_config(cli.config.as_deref(), true)?;
            let pipeline = build_pipeline(cfg).await?;
            epitaph::server::serve(pipeline).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            if matches!(cli.format, Format::Html) {
                return Err(Error::input("--format", "doctor prints table or json").into());
            }
            let cfg = load_config(cli.config.as_deref(), true)?;
            let list = epitaph::pipeline::doctor(&cfg).await;
            let mut out = BufWriter::new(std::io::stdout().lock());
            match cli.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
                _ => write!(out, "{}", render_checklist(&cfg.origin, &list, color))?,
            }
            out.flush()?;
            Ok(ExitCode::from(list.exit_code))
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let cfg = load_config(cli.config.as_deref(), false)?;
            let mut problems = cfg.filesystem_problems();
            if let Err(e) = signature_library(&cfg) {
                problems.push(e.to_string());
            }
            if problems.is_empty() {
                println!("{}: ok", cfg.origin);
                Ok(ExitCode::SUCCESS)
            } else {
                Err(Error::Config(
                    problems
                        .into_iter()
                        .map(|p| format!("{}: {p}", cfg.origin))
                        .collect(),
                )
                .into())
            }
        }
    }
}

async fn scan(
    cfg: Config,
    opts: &ScanOptions,
    format: Format,
    color: bool,
) -> anyhow::Result<ExitCode> {
    let flush = cfg.alerts.flush_timeout().to_std().unwrap_or_default();
    let pipeline = build_pipeline(cfg).await?;
    let mut report = pipeline.scan(opts).await?;
    // Deliver what this and earlier runs enqueued, for a bounded time: a dead webhook must
    // not hold up a cron job; what is left waits in the outbox for the next run.
    let stats = pipeline
        .deliver_alerts(Some(std::time::Instant::now() + flush))
        .await?;
    report.summary.alerts_delivered = stats.delivered;
    report.summary.alerts_failed = stats.failed;
    report.summary.alerts_undelivered = pipeline.undelivered_alerts().await?;
    let text = match format {
        Format::Html => pipeline.html_report(Some(report.window)).await?,
        _ => report::render_scan(&report, format, color),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{text}")?;
    out.flush()?;
    for w in &report.summary.input_warnings {
        eprintln!("epitaph: warning: {w}");
    }
    if !report.summary.input_errors.is_empty() {
        eprintln!(
            "epitaph: {} input(s) could not be read; the window will be scanned again next run",
            report.summary.input_errors.len()
        );
        return Ok(ExitCode::from(EXIT_BAD_INPUT));
    }
    let failed: Vec<&epitaph::pipeline::TargetStatus> = report
        .summary
        .targets
        .iter()
        .filter(|t| t.status == epitaph::pipeline::TargetState::Failed)
        .collect();
    for t in &failed {
        eprintln!(
            "epitaph: target {} could not be read: {} (its window from {} is read again next run)",
            t.target,
            t.error.as_deref().unwrap_or("?"),
            t.read_since.to_rfc3339()
        );
    }
    if !failed.is_empty() {
        return Ok(ExitCode::from(
            if failed.len() == report.summary.targets.len() {
                1
            } else {
                EXIT_SOME_TARGETS_FAILED
            },
        ));
    }
    if !report.summary.pending.is_empty() {
        return Ok(ExitCode::from(EXIT_PENDING));
    }
    if !report.summary.coverage.collapsed.is_empty() {
        for c in &report.summary.coverage.collapsed {
            eprintln!("epitaph: evidence collapsed: {c}");
        }
        return Ok(ExitCode::from(EXIT_NO_EVIDENCE));
    }
    let s = &report.summary;
    if s.alerts_failed > 0 || s.alerts_undelivered > 0 {
        eprintln!(
            "epitaph: alert messages not delivered: {} failed for good, {} waiting in the outbox for the next run",
            s.alerts_failed, s.alerts_undelivered
        );
        return Ok(ExitCode::from(EXIT_ALERTS_UNDELIVERED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `epitaph export`: writes the bundle, prints its manifest (JSON) or a summary, and exits
/// non-zero when a part is missing: 2 when an input could not be read, else 3; 4 when a
/// source gave no evidence at all (as `scan`).
async fn export(cfg: Config, opts: &ExportOptions, format: Format) -> anyhow::Result<ExitCode> {
    let pipeline = build_pipeline(cfg).await?;
    let m = pipeline.export(opts).await?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if matches!(format, Format::Json) {
        writeln!(out, "{}", serde_json::to_string_pretty(&m)?)?;
    } else {
        writeln!(
            out,
            "Exported {} – {} to {}: {} termination(s), {} inventory instance(s), last words for {}, memory series for {}.",
            m.window.start.to_rfc3339(),
            m.window.end.to_rfc3339(),
            opts.out.display(),
            m.terminations,
            m.inventory_instances,
            m.last_words,
            m.memory_series
        )?;
        writeln!(
            out,
            "Scan it offline: epitaph scan --config {}",
            opts.out.join(epitaph::sinks::bundle::CONFIG_FILE).display()
        )?;
    }
    out.flush()?;
    if m.complete {
        for c in &m.collapsed {
            eprintln!("epitaph: evidence collapsed: {c}");
        }
        return Ok(if m.collapsed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NO_EVIDENCE)
        });
    }
    eprintln!(
        "epitaph: the bundle is INCOMPLETE ({} part(s), listed in its manifest.json):",
        m.incomplete.len()
    );
    for p in &m.incomplete {
        eprintln!("epitaph:   {} ({}): {}", p.source, p.kind, p.detail);
    }
    Ok(ExitCode::from(
        if m.incomplete.iter().any(|p| p.kind == "input_error") {
            EXIT_BAD_INPUT
        } else if m.incomplete.iter().any(|p| p.kind == "target_failed") {
            EXIT_SOME_TARGETS_FAILED
        } else {
            EXIT_PENDING
        },
    ))
}

/// `--since` and `--until` (a duration back from now, or an RFC 3339 time), each named in
/// its error.
type WindowFlags = (
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

fn window_flags(since: Option<&str>, until: Option<&str>) -> Result<WindowFlags, Error> {
    let now = chrono::Utc::now();
    let parse = |flag: &str, v: Option<&str>| {
        v.map(|s| timefmt::parse_since(s, now).map_err(|e| Error::input(flag, e)))
            .transpose()
    };
    Ok((parse("--since", since)?, parse("--until", until)?))
}

/// The config from `--config`, else `./epitaph.toml`, else (when `required` is false) defaults.
fn load_config(path: Option<&Path>, required: bool) -> anyhow::Result<Config> {
    if let Some(p) = path {
        return Ok(Config::load(Some(p))?);
    }
    let local = Path::new("epitaph.toml");
    if local.exists() {
        return Ok(Config::load(Some(local))?);
    }
    if required {
        return Err(Error::Config(vec![
            "no configuration: pass --config FILE (documented in config/epitaph.example.toml), or try `epitaph demo`".into(),
        ])
        .into());
    }
    Ok(Config::load(None)?)
}

async fn build_pipeline(cfg: Config) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::open(cfg).await?)
}

fn signature_library(cfg: &Config) -> anyhow::Result<SignatureLibrary> {
    Ok(load_signatures(cfg)?)
}

fn open_input(file: &str) -> anyhow::Result<Box<dyn Read>> {
    if file == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(file).map_err(|e| Error::io(Path::new(file), e))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, f)))
}

/// Bytes read per step by `signatures match` (lines longer than this are still read whole).
const MATCH_CHUNK_BYTES: usize = 8 << 20;

/// `signatures match`: one JSON object per matching line (the documented contract). Streams the
/// input in chunks of whole lines through the buffer scanner.
fn signatures_match(lib: &SignatureLibrary, file: &str) -> anyhow::Result<()> {
    let mut input = open_input(file)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut buf: Vec<u8> = Vec::with_capacity(MATCH_CHUNK_BYTES * 2);
    let mut next_line = 1usize;
    let mut eof = false;
    while !eof {
        let filled = buf.len();
        buf.resize(filled + MATCH_CHUNK_BYTES, 0);
        let n =
            read_full(&mut input, &mut buf[filled..]).map_err(|e| Error::io(Path::new(file), e))?;
        buf.truncate(filled + n);
        eof = n == 0;
        // Scan whole lines only; keep a partial last line for the next round (or scan it at EOF).
        let cut = if eof {
            buf.len()
        } else {
            memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1)
        };
        if cut == 0 {
            continue;
        }
        let mut failed = None;
        let lines = lib.scan_buffer(&buf[..cut], next_line, |line, _, m| {
            let obj = serde_json::json!({
                "line": line,
                "signature": m.signature.spec.id,
                "runtime": m.signature.spec.runtime,
                "kind": m.signature.spec.kind.as_str(),
            });
            if let Err(e) = writeln!(out, "{obj}") {
                failed.get_or_insert(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        next_line += lines;
        buf.drain(..cut);
    }
    out.flush()?;
    Ok(())
}

/// Reads until `dst` is full or the input ends; returns the bytes read.
fn read_full(input: &mut dyn Read, dst: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < dst.len() {
        match input.read(&mut dst[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_series(file: &str) -> anyhow::Result<Vec<(chrono::DateTime<chrono::Utc>, f64)>> {
    let mut bytes = Vec::new();
    open_input(file)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(Path::new(file), e))?;
    let name = if file == "-" { "<stdin>" } else { file };
    Ok(epitaph::sources::file::parse_series_csv(&bytes, name)?)
}

/// `epitaph doctor`'s checklist for people: one line per check, the fix under each FAIL and
/// WARN, a tally at the end.
fn render_checklist(
    origin: &str,
    list: &epitaph::analysis::doctor::Checklist,
    color: bool,
) -> String {
    use epitaph::analysis::doctor::Status;
    let paint = |status: Status| {
        let label = status.label();
        let code = match status {
            Status::Pass => "32",
            Status::Warn => "33",
            Status::Fail => "31",
            Status::Skip => "2",
        };
        if color {
            format!("\x1b[{code}m{label}\x1b[0m")
        } else {
            label.to_string()
        }
    };
    let mut out = format!("epitaph doctor: {origin}\n");
    for c in &list.checks {
        out.push_str(&format!("{} {}: {}\n", paint(c.status), c.id, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("     fix: {fix}\n"));
        }
    }
    let count = |s: Status| list.checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "{} passed, {} warning(s), {} failed, {} not checked\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    ));
    out
}
