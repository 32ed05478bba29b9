//! Labelled memory shapes for judging leak detectors: each generated series is a leak or not by
//! construction, drawn from a family with many parameters (duration, sample period, level,
//! limit in percent or bytes, noise) so that a detector cannot be tuned to one picture.
//!
//! Leaks: steady growth, steps that never come down, a GC sawtooth with rising troughs, growth
//! proportional to a daily traffic cycle, slow leaks of a few percent a day over a week,
//! growth that starts after a warm-up, a climb that ends pinned at the limit, and leaks
//! interrupted by restarts.
//! Not leaks: flat noise, a healthy GC sawtooth, a warm-up that plateaus, daily cycles without
//! a trend, a one-off step followed by a long flat stretch, spikes that recover, decreasing
//! memory, mean-reverting noise, healthy processes with restarts, batch jobs (memory ramps
//! during each job and returns to an idle baseline between jobs), and page cache (fills to a
//! ceiling, sits there, is evicted under pressure, refills — the series may end mid-fill).
//! Gaps: two shapes carry missing samples (NaN, as exports write them) over a leak and over a
//! flat series; a detector must skip them, not fail.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::Rng;

/// One labelled series.
#[derive(Debug, Clone)]
pub struct LabelledSeries {
    /// The shape family, e.g. "leak/steps" or "no_leak/daily_cycle".
    pub shape: &'static str,
    pub leak: bool,
    pub points: Vec<(DateTime<Utc>, f64)>,
    pub limit: f64,
}

pub const LEAK_SHAPES: [&str; 9] = [
    "leak/linear",
    "leak/steps",
    "leak/sawtooth_rising_troughs",
    "leak/traffic_proportional",
    "leak/slow_week",
    "leak/after_warm_up",
    "leak/climb_to_limit",
    "leak/with_restarts",
    "leak/with_gaps",
];

pub const NO_LEAK_SHAPES: [&str; 12] = [
    "no_leak/flat_noise",
    "no_leak/healthy_sawtooth",
    "no_leak/warm_up_plateau",
    "no_leak/daily_cycle",
    "no_leak/step_then_flat",
    "no_leak/recovering_spikes",
    "no_leak/decreasing",
    "no_leak/mean_reverting",
    "no_leak/healthy_restarts",
    "no_leak/batch_jobs",
    "no_leak/page_cache",
    "no_leak/flat_with_gaps",
];

/// `per_shape` series of every shape, deterministic for a seed.
pub fn corpus(seed: u64, per_shape: usize) -> Vec<LabelledSeries> {
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x00C0_FFEE);
    let mut out = Vec::with_capacity(per_shape * (LEAK_SHAPES.len() + NO_LEAK_SHAPES.len()));
    for shape in LEAK_SHAPES.iter().chain(NO_LEAK_SHAPES.iter()) {
        for _ in 0..per_shape {
            out.push(generate(shape, &mut rng));
        }
    }
    out
}

/// Shared knobs drawn for each series.
struct Knobs {
    start: DateTime<Utc>,
    period_secs: i64,
    limit: f64,
    base: f64,
    noise: f64,
}

fn knobs(rng: &mut Rng) -> Knobs {
    let limit = if rng.unit() < 0.5 {
        100.0
    } else {
        4.0 * 1024.0 * 1024.0 * 1024.0
    };
    let day = rng.int(0, 300);
    Knobs {
        start: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + Duration::days(day)
            + Duration::minutes(rng.int(0, 1439)),
        period_secs: *rng.pick(&[60, 60, 300, 300, 300]),
        limit,
        base: rng.range(0.15, 0.45) * limit,
        noise: rng.pick(&[0.003, 0.005, 0.01, 0.02, 0.03]) * limit,
    }
}

fn hours(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    rng.range(lo, hi)
}

/// Builds a series from a value function of elapsed seconds, adding noise and clamping to
/// [0, limit].
fn sample(
    k: &Knobs,
    dur_h: f64,
    rng: &mut Rng,
    mut f: impl FnMut(f64, &mut Rng) -> f64,
) -> Vec<(DateTime<Utc>, f64)> {
    let n = ((dur_h * 3600.0) as i64 / k.period_secs).max(2);
    (0..=n)
        .map(|i| {
            let s = (i * k.period_secs) as f64;
            let v = f(s, rng) + k.noise * rng.normal();
            (
                k.start + Duration::seconds(i * k.period_secs),
                v.clamp(0.0, k.limit),
            )
        })
        .collect()
}

/// Missing samples as exports write them (NaN): scattered single points and a few longer
/// outages (a collector down for a while).
fn with_gaps(mut pts: Vec<(DateTime<Utc>, f64)>, rng: &mut Rng) -> Vec<(DateTime<Utc>, f64)> {
    let n = pts.len();
    let scattered = rng.range(0.01, 0.08);
    for p in pts.iter_mut() {
        if rng.unit() < scattered {
            p.1 = f64::NAN;
        }
    }
    for _ in 0..rng.int(1, 3) {
        let len = (n as f64 * rng.range(0.02, 0.1)) as usize;
        let from = rng.int(0, n.saturating_sub(len + 1) as i64) as usize;
        for p in pts.iter_mut().skip(from).take(len) {
            p.1 = f64::NAN;
        }
    }
    pts
}

fn sawtooth(s: f64, amp: f64, period: f64, phase: f64) -> f64 {
    amp * ((s / period + phase).fract())
}

const DAY: f64 = 86_400.0;

fn generate(shape: &'static str, rng: &mut Rng) -> LabelledSeries {
    let k = knobs(rng);
    let l = k.limit;
    let b = k.base;
    let room = l * 0.95 - b;
    let points = match shape {
        "leak/linear" => {
            let d = hours(rng, 4.0, 72.0);
            let rise = rng.range(0.35, 0.9) * room;
            sample(&k, d, rng, |s, _| b + rise * s / (d * 3600.0))
        }
        "leak/steps" => {
            let d = hours(rng, 8.0, 72.0);
            let steps = rng.int(5, 12) as usize;
            let rise = rng.range(0.4, 0.9) * room;
            let mut at: Vec<f64> = (0..steps)
                .map(|i| (i as f64 + rng.range(0.2, 0.9)) / steps as f64)
                .collect();
            at.sort_by(|a, b| a.total_cmp(b));
            sample(&k, d, rng, |s, _| {
                let frac = s / (d * 3600.0);
                b + rise * at.iter().filter(|&&a| a <= frac).count() as f64 / steps as f64
            })
        }
        "leak/sawtooth_rising_troughs" => {
            let d = hours(rng, 6.0, 72.0);
            let amp = rng.range(0.05, 0.15) * l;
            let period = rng.range(10.0, 60.0) * 60.0;
            let phase = rng.unit();
            let rise = rng.range(0.35, 0.8) * (room - amp);
            sample(&k, d, rng, |s, _| {
                b + rise * s / (d * 3600.0) + sawtooth(s, amp, period, phase)
            })
        }
        "leak/traffic_proportional" => {
            let d = hours(rng, 48.0, 168.0);
            let cycle = rng.range(0.05, 0.15) * l;
            let rise = rng.range(0.35, 0.8) * (room - cycle);
            let phase = rng.unit() * DAY;
            // Leaked memory accumulates with traffic: the integral of (1 + sin).
            sample(&k, d, rng, |s, _| {
                let w = 2.0 * std::f64::consts::PI / DAY;
                let acc = s - ((w * (s + phase)).cos() - (w * phase).cos()) / w * 0.8;
                b + rise * acc / (d * 3600.0) + cycle * (0.5 + 0.5 * (w * (s + phase)).sin())
            })
        }
        "leak/slow_week" => {
            let per_day = rng.range(0.02, 0.05) * l;
            let cycle = if rng.unit() < 0.5 {
                rng.range(0.03, 0.1) * l
            } else {
                0.0
            };
            let phase = rng.unit() * DAY;
            let k = Knobs {
                period_secs: 300,
                noise: k.noise.min(0.01 * l),
                ..k
            };
            sample(&k, 168.0, rng, |s, _| {
                let w = 2.0 * std::f64::consts::PI / DAY;
                b + per_day * s / DAY + cycle * (0.5 + 0.5 * (w * (s + phase)).sin())
            })
        }
        "leak/after_warm_up" => {
            let d = hours(rng, 8.0, 72.0);
            let warm = rng.range(0.1, 0.25) * l;
            let tau = rng.range(15.0, 60.0) * 60.0;
            let onset = rng.range(0.1, 0.35) * d * 3600.0;
            let rise = rng.range(0.35, 0.8) * (room - warm);
            sample(&k, d, rng, |s, _| {
                let grow = if s > onset {
                    rise * (s - onset) / (d * 3600.0 - onset)
                } else {
                    0.0
                };
                b - warm * (-s / tau).exp() + grow
            })
        }
        "leak/climb_to_limit" => {
            let d = hours(rng, 4.0, 48.0);
            let accel = rng.range(1.0, 2.0);
            let pinned = rng.range(0.0, 0.04) * d * 3600.0;
            sample(&k, d, rng, |s, _| {
                let t = (s / (d * 3600.0 - pinned)).min(1.0);
                b + (l - b) * t.powf(accel)
            })
        }
        "leak/with_restarts" => {
            let d = hours(rng, 12.0, 72.0);
            let restarts = rng.int(1, 3) as f64;
            let life = d * 3600.0 / (restarts + 1.0);
            let top = rng.range(0.85, 0.98) * l;
            let low = rng.range(0.1, 0.3) * l;
            sample(&k, d, rng, |s, _| low + (top - low) * (s % life) / life)
        }
        "no_leak/flat_noise" => {
            let d = hours(rng, 4.0, 168.0);
            sample(&k, d, rng, |_, _| b)
        }
        "no_leak/healthy_sawtooth" => {
            let d = hours(rng, 4.0, 96.0);
            let amp = rng.range(0.05, 0.25) * l;
            let period = rng.range(5.0, 90.0) * 60.0;
            let phase = rng.unit();
            sample(&k, d, rng, |s, _| b + sawtooth(s, amp, period, phase))
        }
        "no_leak/warm_up_plateau" => {
            let d = hours(rng, 4.0, 72.0);
            let warm = rng.range(0.1, 0.35) * l;
            let tau = rng.range(10.0, 120.0) * 60.0;
            sample(&k, d, rng, |s, _| b + warm * (1.0 - (-s / tau).exp()))
        }
        "no_leak/daily_cycle" => {
            let d = hours(rng, 36.0, 168.0);
            let amp = rng.range(0.1, 0.3) * l;
            let phase = rng.unit() * DAY;
            sample(&k, d, rng, |s, _| {
                let w = 2.0 * std::f64::consts::PI / DAY;
                b + amp * (0.5 + 0.5 * (w * (s + phase)).sin())
            })
        }
        "no_leak/step_then_flat" => {
            let d = hours(rng, 12.0, 120.0);
            let at = rng.range(0.1, 0.4) * d * 3600.0;
            let step = rng.range(0.1, 0.3) * l;
            sample(&k, d, rng, |s, _| if s >= at { b + step } else { b })
        }
        "no_leak/recovering_spikes" => {
            let d = hours(rng, 6.0, 96.0);
            let rate = rng.range(0.005, 0.03);
            let height = rng.range(0.2, 0.5) * l;
            let mut left = 0i64;
            sample(&k, d, rng, move |_, r| {
                if left > 0 {
                    left -= 1;
                    b + height
                } else if r.unit() < rate {
                    left = r.int(0, 3);
                    b + height
                } else {
                    b
                }
            })
        }
        "no_leak/decreasing" => {
            let d = hours(rng, 4.0, 72.0);
            let hi = rng.range(0.5, 0.9) * l;
            let drop = rng.range(0.1, 0.4) * l;
            let tau = rng.range(0.2, 2.0) * d * 3600.0;
            sample(&k, d, rng, |s, _| hi - drop * (1.0 - (-s / tau).exp()))
        }
        "no_leak/mean_reverting" => {
            let d = hours(rng, 6.0, 96.0);
            let sigma = rng.range(0.01, 0.03) * l;
            let revert_secs = rng.range(0.5, 4.0) * 3600.0;
            let theta = (k.period_secs as f64 / revert_secs).min(1.0);
            let mut x = b;
            sample(&k, d, rng, move |_, r| {
                x += theta * (b - x) + sigma * r.normal();
                x
            })
        }
        "no_leak/healthy_restarts" => {
            let d = hours(rng, 12.0, 96.0);
            let restarts = rng.int(1, 3) as f64;
            let life = d * 3600.0 / (restarts + 1.0);
            let warm = rng.range(0.2, 0.4) * l;
            let tau = rng.range(10.0, 40.0) * 60.0;
            let low = rng.range(0.05, 0.1) * l;
            sample(&k, d, rng, |s, _| {
                low + warm * (1.0 - (-(s % life) / tau).exp())
            })
        }
        "leak/with_gaps" => {
            let d = hours(rng, 6.0, 72.0);
            let rise = rng.range(0.35, 0.9) * room;
            let pts = sample(&k, d, rng, |s, _| b + rise * s / (d * 3600.0));
            with_gaps(pts, rng)
        }
        "no_leak/batch_jobs" => {
            let d = hours(rng, 24.0, 96.0);
            let every = rng.range(1.0, 6.0) * 3600.0;
            let job = rng.range(0.2, 0.5) * every;
            let amp = rng.range(0.2, 0.5) * l;
            let offset = rng.unit() * every;
            sample(&k, d, rng, |s, _| {
                let into = (s + offset) % every;
                if into < job {
                    b + amp * into / job
                } else {
                    b
                }
            })
        }
        "no_leak/page_cache" => {
            let d = hours(rng, 24.0, 96.0);
            let ceiling = rng.range(0.7, 0.9) * l;
            let fill = rng.range(1.0, 6.0) * 3600.0;
            // Each cycle: refill from an evicted level to the ceiling, then sit there until
            // memory pressure evicts.
            let mut cycles = Vec::new();
            let mut at = -rng.unit() * 8.0 * 3600.0;
            while at < d * 3600.0 {
                let low = rng.range(0.1, 0.35) * l;
                let sit = rng.range(2.0, 12.0) * 3600.0;
                cycles.push((at, low));
                at += fill + sit;
            }
            sample(&k, d, rng, |s, _| {
                let (start, low) = cycles
                    .iter()
                    .rev()
                    .find(|(c, _)| *c <= s)
                    .copied()
                    .unwrap_or((0.0, b));
                let t = ((s - start) / fill).min(1.0);
                low + (ceiling - low) * (1.0 - (1.0 - t).powi(2))
            })
        }
        "no_leak/flat_with_gaps" => {
            let d = hours(rng, 4.0, 168.0);
            let pts = sample(&k, d, rng, |_, _| b);
            with_gaps(pts, rng)
        }
        _ => Vec::new(),
    };
    LabelledSeries {
        shape,
        leak: shape.starts_with("leak/"),
        points,
        limit: l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_labelled() {
        let a = corpus(3, 2);
        let b = corpus(3, 2);
        assert_eq!(a.len(), 2 * (LEAK_SHAPES.len() + NO_LEAK_SHAPES.len()));
        // Bit for bit: the gap shapes hold NaN, which equals nothing.
        let bits = |s: &LabelledSeries| -> Vec<(DateTime<Utc>, u64)> {
            s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect()
        };
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(bits(x), bits(y));
            assert!(
                x.points.len() >= 40,
                "{} has {} points",
                x.shape,
                x.points.len()
            );
            assert_eq!(x.leak, x.shape.starts_with("leak/"));
        }
    }
}

/// A confusion matrix for "leak" as the positive class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

impl Score {
    pub fn add(&mut self, truth: bool, said: bool) {
        match (truth, said) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Scores a detector over a corpus: overall, and per shape.
pub fn score(
    corpus: &[LabelledSeries],
    detector: impl Fn(&LabelledSeries) -> bool,
) -> (Score, Vec<(&'static str, Score)>) {
    let mut all = Score::default();
    let mut per: Vec<(&'static str, Score)> = Vec::new();
    for s in corpus {
        let said = detector(s);
        all.add(s.leak, said);
        match per.iter_mut().find(|(n, _)| *n == s.shape) {
            Some((_, sc)) => sc.add(s.leak, said),
            None => {
                let mut sc = Score::default();
                sc.add(s.leak, said);
                per.push((s.shape, sc));
            }
        }
    }
    (all, per)
}

/// Detection delay on a leaking series: the smallest prefix (as a fraction of the series, in
/// steps of `1/steps`) on which the detector first says leak, or None if it never does.
pub fn first_detection(
    s: &LabelledSeries,
    steps: usize,
    detector: impl Fn(&[(DateTime<Utc>, f64)], f64) -> bool,
) -> Option<f64> {
    (1..=steps).find_map(|k| {
        let n = (s.points.len() * k / steps).max(2);
        detector(&s.points[..n], s.limit).then_some(k as f64 / steps as f64)
    })
}
