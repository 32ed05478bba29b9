//! `epitaph doctor`'s wiring: the probes of what the configuration points at (the AWS account
//! target by target, the log and metric APIs, the exports), judged by `analysis::doctor`.

use super::*;
use crate::config::SourceKind;

/// `epitaph doctor`: probes what the configuration points at — the real account for `aws`
/// sources (`sources::aws` probes), the exports for `file` ones (read through the source
/// traits) — and has `analysis::doctor` judge it into a checklist. Opens no store, writes
/// nothing. The window is the configured one (`scan.since`, `scan.until`), from now.
pub async fn doctor(cfg: &Config) -> crate::analysis::doctor::Checklist {
    use crate::analysis::doctor::{self as judge, Check, FileRead};
    use crate::sources::file::{FileActivities, FileLogs, FileMetrics};
    use crate::sources::{ActivitySource, LogSource, MetricSource};
    let now = Utc::now();
    let until = cfg.scan.until.as_ref().map_or(now, |u| u.resolve(now));
    let since = cfg.scan.since.resolve(until);
    let window = TimeWindow {
        start: since,
        end: until,
    };
    let mut checks = judge::kind_checks(cfg, cfg!(feature = "aws"));
    let path_problems = cfg.filesystem_problems();
    checks.extend(judge::path_checks(cfg, &path_problems));
    let s = &cfg.sources;
    // A file source is read only when its path exists (a missing one already failed above).
    let readable = |key: &str, kind: SourceKind| {
        kind == SourceKind::File && !path_problems.iter().any(|p| p.starts_with(key))
    };
    let files = s.with_paths_resolved(|p| cfg.resolve(p));
    let failed = |e: Error| FileRead {
        errors: vec![e.to_string()],
        ..Default::default()
    };
    let first_skipped = |(n, first): (usize, Vec<Skipped>)| {
        (
            n,
            first
                .iter()
                .map(|k| format!("{}: {}", k.location, k.reason))
                .collect::<Vec<_>>(),
        )
    };
    // What a log or metrics read adds after its lookups: the records it skipped and the
    // inputs it refused or found truncated.
    let finish = |mut read: FileRead,
                  skipped: (usize, Vec<Skipped>),
                  problems: crate::sources::InputProblems| {
        (read.skipped, read.first_skipped) = first_skipped(skipped);
        read.errors.extend(problems.errors);
        read.warnings = problems.warnings;
        read
    };
    let mut terminations: Vec<Termination> = Vec::new();
    let activities = if readable("sources.activities.path", s.activities.kind) {
        let read = match FileActivities::new(&files.activities) {
            Ok(a) => a.terminations(window).await,
            Err(e) => Err(e),
        };
        Some(match read {
            Ok(batch) => {
                terminations = batch.terminations;
                let (skipped, first) = first_skipped((batch.skipped.len(), batch.skipped));
                FileRead {
                    found: terminations.len(),
                    skipped,
                    first_skipped: first,
                    errors: batch.errors,
                    warnings: batch.warnings,
                    ..Default::default()
                }
            }
            Err(e) => failed(e),
        })
    } else {
        None
    };
    let samples: Vec<crate::sources::probe::Sample> =
        judge::pick_samples(cfg, window, &terminations, &[], now)
            .into_iter()
            .filter(|x| x.terminated_at.is_some())
            .collect();
    let logs = if readable("sources.logs.path", s.logs.kind) {
        Some(match FileLogs::new(&files.logs) {
            Ok(l) => {
                let mut read = FileRead {
                    sampled: samples.len(),
                    ..Default::default()
                };
                for x in &samples {
                    let q = sample_last_words_query(cfg, x, None);
                    match l.last_words(&q).await {
                        Ok(w) if !w.events.is_empty() => read.found += 1,
                        Ok(_) => {}
                        Err(e) => read.errors.push(e.to_string()),
                    }
                }
                finish(read, l.skipped(), l.input_problems())
            }
            Err(e) => failed(e),
        })
    } else {
        None
    };
    let metrics = if readable("sources.metrics.path", s.metrics.kind) {
        Some(match FileMetrics::new(&files.metrics) {
            Ok(m) => {
                let queries: Vec<SeriesQuery> = samples
                    .iter()
                    .map(|x| SeriesQuery {
                        instance_id: x.instance_id.clone(),
                        origin: x.origin.clone(),
                        asg: x.asg.clone(),
                        start: x.terminated_at.unwrap_or(x.until) - cfg.series_lookback(),
                        end: x.until,
                    })
                    .collect();
                let mut read = FileRead {
                    sampled: samples.len(),
                    ..Default::default()
                };
                match m.memory_series(&queries).await {
                    Ok(series) => {
                        for r in series {
                            match r {
                                Ok(Some(_)) => read.found += 1,
                                Ok(None) => {}
                                Err(e) => read.errors.push(e.to_string()),
                            }
                        }
                    }
                    Err(e) => read.errors.push(e.to_string()),
                }
                finish(read, m.skipped(), m.input_problems())
            }
            Err(e) => failed(e),
        })
    } else {
        None
    };
    checks.extend(judge::file_checks(
        activities.as_ref(),
        logs.as_ref(),
        metrics.as_ref(),
        window,
    ));
    // The instances the AWS probe sampled (its own terminations), for the probes of the
    // metrics and log APIs.
    #[allow(unused_mut)]
    let mut aws_samples: Vec<crate::sources::probe::Sample> = Vec::new();
    if s.uses(SourceKind::Aws) {
        #[cfg(feature = "aws")]
        {
            let (aws_checks, sampled) = doctor_aws(cfg, window, &terminations, now).await;
            checks.extend(aws_checks);
            aws_samples = sampled;
        }
    } else {
        checks.push(judge::aws_not_used());
    }
    if s.metrics.kind == SourceKind::Prometheus {
        let sampled = if s.activities.kind == SourceKind::Aws {
            &aws_samples
        } else {
            &samples
        };
        checks.extend(doctor_prometheus(cfg, sampled).await);
    }
    if s.logs.kind.is_logs_backend() {
        let (sampled, inventory) = if s.activities.kind == SourceKind::Aws {
            (&aws_samples, Vec::new())
        } else {
            let inventory = match FileActivities::new(&files.activities) {
                Ok(a) => a.inventory().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            (&samples, inventory)
        };
        checks.extend(doctor_log_api(cfg, sampled, &inventory).await);
    }
    #[cfg(feature = "aws")]
    if cfg.sources.events.kind == crate::sources::events::config::EventsKind::Sqs {
        let url = cfg.sources.events.queue_url.clone().unwrap_or_default();
        checks.push(
            match crate::sources::events::sqs::SqsQueue::from_config(&cfg.sources.events, &cfg.aws)
                .await
            {
                Ok(q) => judge::events_check(&url, q.attributes().await.as_ref()),
                Err(e) => Check::fail(
                    "events.queue",
                    judge::Failure::Config,
                    e.to_string(),
                    "fix [sources.events] and [aws]",
                ),
            },
        );
    }
    // The doctor compiles the whole library (a scan compiles it on its first match).
    checks.push(
        match load_signatures(cfg).and_then(|lib| lib.compile().map(|()| lib)) {
            Ok(lib) => Check::pass(
                "signatures",
                format!("{} signatures compiled", lib.signatures().len()),
            ),
            Err(e) => Check::fail(
                "signatures",
                judge::Failure::Config,
                e.to_string(),
                "fix the signature file named (signatures.extra)",
            ),
        },
    );
    judge::Checklist::new(checks)
}

/// The Prometheus probe of `epitaph doctor` for the sampled instances, judged.
async fn doctor_prometheus(
    cfg: &Config,
    samples: &[crate::sources::probe::Sample],
) -> Vec<crate::analysis::doctor::Check> {
    use crate::analysis::doctor as judge;
    match crate::sources::prometheus::PrometheusMetrics::from_config(cfg).await {
        Ok(m) => judge::prometheus_checks(cfg, &m.probe(samples).await),
        Err(e) => judge::prometheus_not_configured(&e.to_string()),
    }
}

/// The last-words query for an instance the doctor sampled, with its launch time and host
/// names when the inventory knows them.
fn sample_last_words_query(
    cfg: &Config,
    x: &crate::sources::probe::Sample,
    info: Option<&InstanceInfo>,
) -> LastWordsQuery {
    let at = x.terminated_at.unwrap_or(x.until);
    LastWordsQuery {
        instance_id: x.instance_id.clone(),
        origin: x.origin.clone(),
        asg: x.asg.clone().unwrap_or_default(),
        terminated_at: at,
        window: cfg.last_words_window(),
        grace: x.until - at,
        max_bytes: cfg.scan.last_words_max_bytes,
        launched_at: info.and_then(|i| i.launch_time).filter(|l| *l < at),
        private_dns: info.and_then(|i| i.private_dns.clone()),
        private_ip: info.and_then(|i| i.private_ip.clone()),
    }
}

/// The probe of a log API (`splunk`, `loki`) for the sampled instances (their private DNS
/// names and IPs from `inventory`), judged.
async fn doctor_log_api(
    cfg: &Config,
    samples: &[crate::sources::probe::Sample],
    inventory: &[InstanceInfo],
) -> Vec<crate::analysis::doctor::Check> {
    use crate::analysis::doctor as judge;
    let queries: Vec<LastWordsQuery> = samples
        .iter()
        .map(|x| {
            let info = inventory.iter().find(|i| i.instance_id == x.instance_id);
            sample_last_words_query(cfg, x, info)
        })
        .collect();
    let backend = cfg.sources.logs.kind.as_str();
    let probe = match backend {
        "splunk" => match crate::sources::splunk::SplunkLogs::from_config(cfg) {
            Ok(l) => l.probe(&queries).await,
            Err(e) => return judge::log_api_not_configured(backend, &e.to_string()),
        },
        _ => match crate::sources::loki::LokiLogs::from_config(cfg) {
            Ok(l) => l.probe(&queries).await,
            Err(e) => return judge::log_api_not_configured(backend, &e.to_string()),
        },
    };
    judge::log_api_checks(&probe)
}

/// The AWS probes of `epitaph doctor`, target by target: Auto Scaling first (its first call
/// says whether the account answers at all), then the logs and the metric for the samples it
/// found. A target that cannot be reached is not probed further. Also returns the first
/// target's samples (for a metrics or log backend outside AWS).
#[cfg(feature = "aws")]
async fn doctor_aws(
    cfg: &Config,
    window: TimeWindow,
    file_terminations: &[Termination],
    now: DateTime<Utc>,
) -> (
    Vec<crate::analysis::doctor::Check>,
    Vec<crate::sources::probe::Sample>,
) {
    use crate::analysis::doctor as judge;
    use crate::sources::aws;
    use crate::sources::probe::TargetProbe;
    let ctx = match aws::AwsContext::load(&cfg.aws).await {
        Ok(c) => c,
        Err(e) => return (judge::aws_not_configured(&e.to_string()), Vec::new()),
    };
    let s = &cfg.sources;
    let activities = (s.activities.kind == SourceKind::Aws)
        .then(|| aws::AwsActivities::new(ctx.clone(), &s.activities, cfg.aws.api_concurrency));
    let metrics = (s.metrics.kind == SourceKind::Aws)
        .then(|| aws::AwsMetrics::new(ctx.clone(), &s.metrics).ok())
        .flatten();
    let several = ctx.targets.len() > 1;
    let mut out = Vec::new();
    let mut first_samples = Vec::new();
    for (i, t) in ctx.targets.iter().enumerate() {
        let mut probe = TargetProbe {
            target: t.info.clone(),
            activities: None,
            logs: None,
            metrics: None,
        };
        // Exported activities carry no target: they go with the first one.
        let mut terms: Vec<Termination> = file_terminations
            .iter()
            .filter(|x| x.origin.as_deref().map_or(i == 0, |o| o == t.name))
            .cloned()
            .collect();
        let mut running = Vec::new();
        let mut reachable = true;
        if let Some(a) = &activities {
            let p = a.probe(t, window.start).await;
            reachable = !judge::first_call_unreachable(&p.calls);
            if let Ok(found) = &p.activities {
                terms = found.clone();
            }
            if let Ok(l) = &p.listing {
                running = l
                    .items
                    .iter()
                    .filter(|g| p.selected.contains(&g.name))
                    .flat_map(|g| g.instances.iter().map(|id| (id.clone(), g.name.clone())))
                    .collect();
            }
            probe.activities = Some(p);
        }
        let samples = judge::pick_samples(cfg, window, &terms, &running, now);
        if i == 0 {
            first_samples = samples.clone();
        }
        if reachable && s.logs.kind == SourceKind::Aws {
            let p = aws::probe_logs(t, &s.logs, &samples).await;
            reachable = !judge::first_call_unreachable(&p.calls);
            probe.logs = Some(p);
        }
        if let (true, Some(m)) = (reachable, &metrics) {
            probe.metrics = Some(m.probe(t, samples.first()).await);
        }
        out.extend(judge::aws_checks(
            cfg,
            &probe,
            several.then_some(t.name.as_str()),
        ));
    }
    (out, first_samples)
}
