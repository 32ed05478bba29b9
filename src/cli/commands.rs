//! What each command does: load what it needs, call the library, print, and choose the exit
//! code (the codes are named in `cli/mod.rs`).
//!
//! Length: one function per command, each short; kept in one file so the exit-code choices can
//! be read together.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

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

use super::{
    FleetArgs, Globals, EXIT_ALERTS_UNDELIVERED, EXIT_BAD_INPUT, EXIT_NO_EVIDENCE, EXIT_PENDING,
    EXIT_SOME_TARGETS_FAILED,
};

/// How long `epitaph healthcheck` waits for the answer.
const HEALTHCHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// `epitaph scan`.
pub(super) async fn scan(
    g: &Globals,
    since: Option<&str>,
    until: Option<&str>,
    refresh: bool,
    strict: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = g.load(true)?;
    let (since, until) = window_flags(since, until)?;
    let opts = ScanOptions {
        since,
        until,
        refresh,
        progress: true,
        strict,
    };
    run_scan(cfg, &opts, g.format, g.color).await
}

/// `epitaph export`.
pub(super) async fn export(
    g: &Globals,
    since: Option<&str>,
    until: Option<&str>,
    out: PathBuf,
) -> anyhow::Result<ExitCode> {
    let cfg = g.load(true)?;
    let (since, until) = window_flags(since, until)?;
    let opts = ExportOptions { since, until, out };
    write_export(cfg, &opts, g.format).await
}

/// `epitaph instance ID`.
pub(super) async fn instance(
    g: &Globals,
    instance_id: &str,
    refresh: bool,
) -> anyhow::Result<ExitCode> {
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
    let cfg = g.load(true)?;
    let pipeline = build_pipeline(cfg).await?;
    let inv = pipeline.investigate(instance_id, refresh).await?;
    print!("{}", report::render_investigation(&inv, g.format, g.color));
    Ok(ExitCode::SUCCESS)
}

/// `epitaph signatures match FILE`.
pub(super) fn signatures_match(
    g: &Globals,
    file: &str,
    signatures: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let lib = match signatures {
        Some(p) => load_signature_file(p)?,
        None => match g.load(false) {
            Ok(cfg) => signature_library(&cfg)?,
            Err(_) if g.config_path().is_none() => SignatureLibrary::default_library()?,
            Err(e) => return Err(e),
        },
    };
    match_lines(&lib, file)?;
    Ok(ExitCode::SUCCESS)
}

/// `epitaph signatures list`.
pub(super) fn signatures_list(g: &Globals) -> anyhow::Result<ExitCode> {
    let cfg = g.load(false)?;
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

/// `epitaph heap diff BASELINE TARGET [FINAL]`: exit 0 with no suspect, 3 with suspects.
pub(super) async fn heap_diff(
    g: &Globals,
    baseline: &PathBuf,
    target: &PathBuf,
    last: Option<&PathBuf>,
    top: usize,
    attach: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if matches!(g.format, Format::Html) {
        return Err(Error::input("--format", "heap diff prints table, markdown or json").into());
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
    print!("{}", epitaph::sinks::heap::render(&d, g.format));
    if let Some(deployment) = attach {
        let cfg = g.load(true)?;
        let files = [Some(baseline), Some(target), last]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        let state = epitaph::pipeline::attach_heap_diff(&cfg, deployment, files, d.clone()).await?;
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

/// `epitaph healthcheck`: 0 when the service answers `/healthz` with 200, else 1.
pub(super) async fn healthcheck(g: &Globals, url: Option<String>) -> anyhow::Result<ExitCode> {
    let url = match url {
        Some(u) => u,
        None => {
            let cfg = g.load(false)?;
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

/// `epitaph leak FILE`: one series judged, as JSON.
pub(super) fn leak(file: &str, limit: Option<f64>) -> anyhow::Result<ExitCode> {
    let points = read_series(file)?;
    let a = leak::assess(&points, limit);
    println!("{}", serde_json::to_string(&a)?);
    Ok(ExitCode::SUCCESS)
}

/// `epitaph simulate --out DIR`.
pub(super) fn simulate_fleet(out: &Path, fleet: &FleetArgs, end: &str) -> anyhow::Result<ExitCode> {
    let end = timefmt::parse_instant(end).map_err(|e| Error::input("--end", e))?;
    let opts = SimOptions {
        seed: fleet.seed,
        asgs: fleet.asgs,
        instances: fleet.instances,
        running: fleet.running,
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

/// `epitaph demo`: a simulated fleet scanned with a fresh SQLite state.
pub(super) async fn demo(
    g: &Globals,
    fleet: &FleetArgs,
    keep: Option<&PathBuf>,
) -> anyhow::Result<ExitCode> {
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
        seed: fleet.seed,
        asgs: fleet.asgs,
        instances: fleet.instances,
        running: fleet.running,
        ..Default::default()
    };
    simulate(&dir, &opts)?;
    let cfg = Config::load(Some(&dir.join("epitaph.toml")))?;
    if keep.is_none() {
        eprintln!(
            "epitaph demo: simulated {} terminations in {} groups (seed {}); scanning with a fresh SQLite state\n",
            fleet.instances, fleet.asgs, fleet.seed
        );
    }
    run_scan(
        cfg,
        &ScanOptions {
            progress: true,
            ..Default::default()
        },
        g.format,
        g.color,
    )
    .await
}

/// `epitaph serve`.
pub(super) async fn serve(g: &Globals) -> anyhow::Result<ExitCode> {
    let cfg = g.load(true)?;
    let pipeline = build_pipeline(cfg).await?;
    epitaph::server::serve(pipeline).await?;
    Ok(ExitCode::SUCCESS)
}

/// `epitaph doctor`: the checklist; its own exit codes (see `analysis::doctor`).
pub(super) async fn doctor(g: &Globals) -> anyhow::Result<ExitCode> {
    if matches!(g.format, Format::Html) {
        return Err(Error::input("--format", "doctor prints table or json").into());
    }
    let cfg = g.load(true)?;
    let list = epitaph::pipeline::doctor(&cfg).await;
    let mut out = BufWriter::new(std::io::stdout().lock());
    match g.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
        _ => write!(out, "{}", render_checklist(&cfg.origin, &list, g.color))?,
    }
    out.flush()?;
    Ok(ExitCode::from(list.exit_code))
}

/// `epitaph config check`: every problem at once.
pub(super) fn config_check(g: &Globals) -> anyhow::Result<ExitCode> {
    let cfg = g.load(false)?;
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

/// `epitaph config schema`: the derived JSON Schema of the config, on stdout.
pub(super) fn config_schema() -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(epitaph::config::schema::json_schema())?
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A scan, its alert delivery, the report printed, and the exit code.
async fn run_scan(
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
        // Written as it is serialised (below): a fleet's JSON report (~1.4 KB an instance)
        // is never held whole beside the report itself.
        Format::Json => None,
        Format::Html => Some(pipeline.html_report(Some(report.window)).await?),
        _ => Some(report::render_scan(&report, format, color)),
    };
    // The state is left as one file (no WAL beside it).
    pipeline.close().await?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    match text {
        Some(text) => writeln!(out, "{text}")?,
        None => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
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
async fn write_export(
    cfg: Config,
    opts: &ExportOptions,
    format: Format,
) -> anyhow::Result<ExitCode> {
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
pub(super) fn load_config(path: Option<&Path>, required: bool) -> anyhow::Result<Config> {
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
fn match_lines(lib: &SignatureLibrary, file: &str) -> anyhow::Result<()> {
    lib.compile()?;
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
