//! The leak detector: does a memory series' *floor* rise until the end?
//!
//! A leak is memory that is never given back, so the signal is the lower envelope of the series
//! (the troughs after each GC or cache eviction), not its mean: a healthy GC sawtooth has a flat
//! floor, a leaking one has rising troughs. The steps:
//! 1. sort, drop non-finite values, split at restarts (a drop of more than half) and keep the
//!    most recent segment with enough data;
//! 2. cut it into equal-time buckets and take each bucket's minimum (the floor);
//! 3. Theil–Sen slope of the floor (robust to outliers) and a Mann–Kendall test that the floor
//!    trends up (robust to non-linear shapes);
//! 4. require the growth to persist through the second half (a warm-up that plateaus, or a one-off
//!    step, fails this) and to be material relative to the limit or the level.
//!
//! Every threshold is a named constant below.
//!
//! Length: one detector whose steps share the series' representation and thresholds; about 190
//! lines are its unit tests.

use chrono::{DateTime, Duration, Utc};

use crate::model::{LeakAssessment, LeakSegment, LeakVerdict, SegmentEnd};

/// Values beyond this magnitude are corrupt samples (memory above an exabyte), ignored so the
/// arithmetic cannot overflow.
pub const MAX_ABS_VALUE: f64 = 1.0e18;
/// Fewer points than this → `insufficient_data`.
pub const MIN_POINTS: usize = 12;
/// A basis shorter than this (seconds) → `insufficient_data`: GC cycles and warm-ups need room.
pub const MIN_SPAN_SECS: i64 = 30 * 60;
/// A point below this fraction of the previous one is a restart: the series is split there.
pub const RESTART_DROP_FRACTION: f64 = 0.5;
/// At most this many floor buckets; fewer for short series.
pub const MAX_FLOOR_BUCKETS: usize = 24;
/// At least this many points per floor bucket, so each minimum is a real trough.
pub const MIN_POINTS_PER_BUCKET: usize = 3;
/// Fewer floor buckets than this → `insufficient_data` (Mann–Kendall needs a handful).
pub const MIN_FLOOR_BUCKETS: usize = 6;
/// Mann–Kendall z above which the floor's upward trend is significant (one-sided p < 0.01).
pub const TREND_Z_THRESHOLD: f64 = 2.33;
/// Fraction of the floor (the final part) in which growth must persist. Half, not less: a
/// shorter tail has too few buckets for its own trend test.
pub const TAIL_FRACTION: f64 = 0.5;
/// The final part's slope must be at least this fraction of the overall slope.
pub const TAIL_SLOPE_RATIO: f64 = 0.3;
/// The final part must trend up on its own: Mann–Kendall z at least this (one-sided p < 0.1).
/// A warm-up that plateaus has a significant overall trend but a flat second half.
pub const TAIL_TREND_Z_THRESHOLD: f64 = 1.28;
/// Minimum floor rise over the basis, as a fraction of the limit (when there is one).
pub const MIN_RISE_FRACTION_OF_LIMIT: f64 = 0.05;
/// Minimum floor rise over the basis, as a fraction of the median level (without a limit).
pub const MIN_RISE_FRACTION_OF_LEVEL: f64 = 0.10;
/// The series "reached the limit" when a point in its final stretch is at least this fraction
/// of the limit.
pub const REACHED_LIMIT_FRACTION: f64 = 0.90;
/// The "final stretch" for `reached_limit`: this fraction of the basis' points (at least 2).
pub const FINAL_STRETCH_FRACTION: f64 = 0.05;
/// A basis at least this long (seconds) is judged seasonally: day-over-day differences of
/// hourly floors, so that a daily traffic cycle neither hides nor fakes a trend.
pub const SEASONAL_MIN_SPAN_SECS: i64 = 2 * 86_400;
/// Width of a floor bucket in the seasonal path (seconds).
pub const SEASONAL_BUCKET_SECS: i64 = 3_600;
/// Buckets per day in the seasonal path: the lag of the day-over-day difference.
pub const SEASONAL_LAG_BUCKETS: usize = 24;
/// Confidence given to a no-leak verdict that rests on a failed persistence or size check.
pub const STRUCTURAL_NO_LEAK_CONFIDENCE: f64 = 0.7;
/// The projection's interval: the floor slope's two-sided 90 % confidence interval (Sen 1968,
/// from the ranks of the pairwise slopes), z for 90 %.
pub const PROJECTION_INTERVAL_Z: f64 = 1.645;
/// The swing above the floor (the sawtooth a process reaches its limit on) is measured over
/// this final fraction of the basis' buckets: the recent shape, not the warm-up's.
pub const SWING_FRACTION: f64 = 0.5;
/// Scales a median absolute deviation to a normal σ.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// A drop ends a process's life (a restart) unless the series then rests at the level it
/// dropped to: a batch job ending, or a cache evicted, returns memory to an idle baseline the
/// series sits at. When at least this fraction of the samples rest at their segment's starting
/// level, the drops are returns to a baseline and the series is judged whole.
pub const REST_FRACTION: f64 = 0.3;
/// "At" a level: within this many deviations of the sample-to-sample noise…
pub const REST_BAND_SIGMAS: f64 = 3.0;
/// …and at least within this fraction of the series' range.
pub const REST_BAND_FRACTION_OF_RANGE: f64 = 0.02;
/// A refill is "toward the earlier ceiling" while it stays below the earlier fills' highest
/// level plus this fraction of the series' range.
pub const CEILING_MARGIN_FRACTION: f64 = 0.05;

/// Cleans a series for the detector: finite, sane values, sorted by time, one per instant.
/// Missing samples (NaN, ±∞, as exports write gaps) are skipped; [`gaps`] counts them.
fn clean(points: &[(DateTime<Utc>, f64)]) -> Vec<(i64, f64)> {
    let mut pts: Vec<(i64, f64)> = points
        .iter()
        .filter(|(_, v)| v.is_finite() && v.abs() <= MAX_ABS_VALUE)
        .map(|(t, v)| (t.timestamp_millis(), *v))
        .collect();
    pts.sort_by_key(|p| p.0);
    pts.dedup_by_key(|p| p.0);
    pts
}

/// Samples that are gaps (not finite), which the detector skips.
pub fn gaps(points: &[(DateTime<Utc>, f64)]) -> usize {
    points.iter().filter(|(_, v)| !v.is_finite()).count()
}

/// Assesses a series of `(time, value)` points (any order) against an optional limit.
pub fn assess(points: &[(DateTime<Utc>, f64)], limit: Option<f64>) -> LeakAssessment {
    let mut a = assess_clean(&clean(points), limit);
    a.gaps = gaps(points);
    a
}

fn assess_clean(pts: &[(i64, f64)], limit: Option<f64>) -> LeakAssessment {
    let pts = pts.to_vec();
    let limit = limit.filter(|l| l.is_finite() && *l > 0.0);

    let drops = split_at_restarts(&pts);
    // Drops back to a baseline the series rests at (jobs ending, caches evicted) are not
    // restarts: the series is judged whole, its floor across all of them.
    let rests = drops.len() > 1 && rests_after_drops(&pts, &drops);
    let segments: Vec<&[(i64, f64)]> = if rests { vec![&pts[..]] } else { drops.clone() };
    let restarts = segments.len().saturating_sub(1);
    let evidence = segment_evidence(&drops, rests);
    // The last segment with enough to judge (a short last stretch after a drop is passed over
    // for the one before it).
    let judgeable =
        |s: &[(i64, f64)]| is_sufficient(s) && floor_points(s).len() >= MIN_FLOOR_BUCKETS;
    let Some(basis_at) = segments
        .iter()
        .rposition(|s| judgeable(s))
        .or_else(|| segments.iter().rposition(|s| is_sufficient(s)))
    else {
        let mut a = insufficient(&pts, restarts);
        a.segments = evidence;
        return a;
    };
    let basis = segments[basis_at];
    let floor = floor_points(basis);
    if floor.len() < MIN_FLOOR_BUCKETS {
        let mut a = insufficient(basis, restarts);
        a.segments = evidence;
        return a;
    }

    let start = basis[0].0;
    let end = basis[basis.len() - 1].0;
    let trend = if end - start >= SEASONAL_MIN_SPAN_SECS * 1000 {
        seasonal_trend(basis).unwrap_or_else(|| plain_trend(&floor))
    } else {
        plain_trend(&floor)
    };
    let Trend {
        slope_per_ms,
        z,
        tail_slope,
        tail_z,
    } = trend;
    let rise = slope_per_ms * (end - start) as f64;
    let level = median(basis.iter().map(|p| p.1).collect());
    let min_rise = match limit {
        Some(l) => MIN_RISE_FRACTION_OF_LIMIT * l,
        None => MIN_RISE_FRACTION_OF_LEVEL * level.abs().max(f64::EPSILON),
    };
    let growth_per_hour = slope_per_ms * 3_600_000.0;
    let final_n = ((basis.len() as f64 * FINAL_STRETCH_FRACTION).ceil() as usize).max(2);
    let reached_limit = limit.is_some_and(|l| {
        basis[basis.len().saturating_sub(final_n)..]
            .iter()
            .any(|p| p.1 >= REACHED_LIMIT_FRACTION * l)
    });

    let restart_note = if rests {
        format!(
            " ({} drop(s) back to a baseline the series rests at — jobs ending or caches evicted, not restarts — so the whole series was judged)",
            drops.len() - 1
        )
    } else if restarts > 0 {
        format!(" ({restarts} restart(s) split the series; the last full segment was used)")
    } else {
        String::new()
    };
    // Earlier lives that each filled up and levelled off (a cache, or a process that warms
    // up), and a last one still filling below where they levelled: a refill, not a leak.
    let earlier: Vec<&[(i64, f64)]> = segments[..basis_at]
        .iter()
        .copied()
        .filter(|s| is_sufficient(s))
        .collect();
    let refilling = if !earlier.is_empty() && earlier.iter().all(|s| levelled_off(s)) {
        let (lo, hi) = value_range(&pts);
        let ceiling = earlier
            .iter()
            .flat_map(|s| s.iter().map(|p| p.1))
            .fold(f64::NEG_INFINITY, f64::max);
        let top = basis.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        (top <= ceiling + CEILING_MARGIN_FRACTION * (hi - lo)).then_some(ceiling)
    } else {
        None
    };
    let (verdict, confidence, reason) = if slope_per_ms <= 0.0 || z < TREND_Z_THRESHOLD {
        (
            LeakVerdict::NoLeak,
            1.0 - normal_cdf(z - TREND_Z_THRESHOLD),
            format!("memory floor shows no significant upward trend (Mann-Kendall z = {z:.2})"),
        )
    } else if tail_slope < TAIL_SLOPE_RATIO * slope_per_ms || tail_z < TAIL_TREND_Z_THRESHOLD {
        (
            LeakVerdict::NoLeak,
            STRUCTURAL_NO_LEAK_CONFIDENCE,
            format!("memory floor rose but flattened in the second half (warm-up or one-off step; second-half z = {tail_z:.2})"),
        )
    } else if let Some(ceiling) = refilling {
        (
            LeakVerdict::NoLeak,
            STRUCTURAL_NO_LEAK_CONFIDENCE,
            format!("memory is refilling toward {ceiling:.3}, where each of its {} earlier fill(s) levelled off (a cache, or a warm-up), not past it", earlier.len()),
        )
    } else if rise < min_rise {
        (
            LeakVerdict::NoLeak,
            STRUCTURAL_NO_LEAK_CONFIDENCE,
            format!("memory floor rose by {rise:.3}, below the material threshold {min_rise:.3}"),
        )
    } else {
        (
            LeakVerdict::Leak,
            normal_cdf(z),
            format!(
                "memory floor rose steadily to the end: {growth_per_hour:+.3}/h, Mann-Kendall z = {z:.2}"
            ),
        )
    };

    let projected_exhaustion = match (verdict, limit) {
        (LeakVerdict::Leak, Some(l)) => {
            let floor_at_end = floor_intercept(&floor, slope_per_ms) + slope_per_ms * end as f64;
            let ms_left = ((l - floor_at_end) / slope_per_ms).max(0.0);
            ms_to_time(end).map(|t| t + Duration::milliseconds(ms_left.min(1.0e14) as i64))
        }
        _ => None,
    };

    LeakAssessment {
        verdict,
        growth_per_hour: Some(growth_per_hour),
        growth_fraction_of_limit_per_hour: limit.map(|l| growth_per_hour / l),
        confidence: confidence.clamp(0.0, 1.0),
        projected_exhaustion,
        reached_limit,
        final_peak: basis[basis.len().saturating_sub(final_n)..]
            .iter()
            .map(|p| p.1)
            .reduce(f64::max),
        basis_start: ms_to_time(start),
        basis_end: ms_to_time(end),
        points_used: basis.len(),
        reason: reason + &restart_note,
        gaps: 0,
        segments: evidence,
    }
}

/// The lowest and highest value.
fn value_range(pts: &[(i64, f64)]) -> (f64, f64) {
    pts.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        })
}

/// The sample-to-sample noise (a robust standard deviation of one sample, from the median
/// absolute deviation of the differences).
fn noise_sigma(pts: &[(i64, f64)]) -> f64 {
    let d: Vec<f64> = pts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    if d.is_empty() {
        return 0.0;
    }
    let m = median(d.clone());
    MAD_TO_SIGMA * median(d.iter().map(|x| (x - m).abs()).collect()) / std::f64::consts::SQRT_2
}

/// Whether the series rests after its drops: at least [`REST_FRACTION`] of the samples sit at
/// the level their segment starts from (the first segment: its lowest).
fn rests_after_drops(pts: &[(i64, f64)], segments: &[&[(i64, f64)]]) -> bool {
    let (lo, hi) = value_range(pts);
    let band = (REST_BAND_SIGMAS * noise_sigma(pts)).max(REST_BAND_FRACTION_OF_RANGE * (hi - lo));
    let at_rest: usize = segments
        .iter()
        .enumerate()
        .map(|(k, seg)| {
            let level = if k == 0 { value_range(seg).0 } else { seg[0].1 };
            seg.iter().filter(|p| (p.1 - level).abs() <= band).count()
        })
        .sum();
    at_rest as f64 >= REST_FRACTION * pts.len() as f64
}

/// A life that filled up and levelled off: its floor rose at most until its second half
/// flattened (or never rose significantly).
fn levelled_off(seg: &[(i64, f64)]) -> bool {
    let floor = floor_points(seg);
    if floor.len() < MIN_FLOOR_BUCKETS {
        return false;
    }
    let t = plain_trend(&floor);
    t.slope_per_ms <= 0.0
        || t.z < TREND_Z_THRESHOLD
        || t.tail_slope < TAIL_SLOPE_RATIO * t.slope_per_ms
        || t.tail_z < TAIL_TREND_Z_THRESHOLD
}

/// What the detector saw, for the reader: each stretch between large drops, and whether the
/// drop that ended it was a restart or a return to the series' resting level.
fn segment_evidence(segments: &[&[(i64, f64)]], rests: bool) -> Vec<LeakSegment> {
    segments
        .iter()
        .enumerate()
        .filter_map(|(k, seg)| {
            let (low, high) = value_range(seg);
            // The segment's floor as a line (Theil–Sen over its bucket minima), for the chart.
            let floor = floor_points(seg);
            let (floor_start, floor_end) = if floor.len() >= 2 {
                let slope = theil_sen(&floor);
                let at = |ms: i64| floor_intercept(&floor, slope) + slope * ms as f64;
                (Some(at(seg.first()?.0)), Some(at(seg.last()?.0)))
            } else {
                (None, None)
            };
            Some(LeakSegment {
                start: ms_to_time(seg.first()?.0)?,
                end: ms_to_time(seg.last()?.0)?,
                points: seg.len(),
                low,
                high,
                floor_start,
                floor_end,
                ended_by: if k + 1 == segments.len() {
                    SegmentEnd::SeriesEnd
                } else if rests {
                    SegmentEnd::ReturnToBaseline
                } else {
                    SegmentEnd::Restart
                },
            })
        })
        .collect()
}

/// Where a leaking series is headed: when its peaks reach the limit, with an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// The last sample of the basis.
    pub as_of: DateTime<Utc>,
    /// The floor at `as_of` by the fitted trend.
    pub floor: f64,
    /// The median swing above the floor in the basis' final part.
    pub swing: f64,
    pub growth_per_hour: f64,
    pub expected: DateTime<Utc>,
    pub earliest: DateTime<Utc>,
    /// None when the slope's lower bound is not positive (the floor may stop rising).
    pub latest: Option<DateTime<Utc>>,
    /// The detector's confidence in the leak.
    pub confidence: f64,
}

/// Projects when a series reaches `threshold` (at most its limit): only for a series the
/// detector calls a leak (judged against `limit`). The floor's fitted trend plus the series'
/// usual swing above its floor (a process dies at a peak, not at a trough) meets the threshold
/// at `expected`; the floor slope's confidence interval and the scatter of the floor and the
/// swing give `earliest` and `latest`. A series already there projects to its last sample.
pub fn project(
    points: &[(DateTime<Utc>, f64)],
    limit: Option<f64>,
    threshold: f64,
) -> Option<Projection> {
    let limit = limit.filter(|l| l.is_finite() && *l > 0.0)?;
    let threshold = if threshold.is_finite() && threshold > 0.0 {
        threshold.min(limit)
    } else {
        limit
    };
    let assessment = assess(points, Some(limit));
    if assessment.verdict != LeakVerdict::Leak {
        return None;
    }
    let slope = assessment.growth_per_hour? / 3_600_000.0;
    if slope <= 0.0 {
        return None;
    }
    let pts = clean(points);
    let segments = split_at_restarts(&pts);
    let basis = segments.iter().rev().find(|s| is_sufficient(s)).copied()?;
    let floor = floor_points(basis);
    let end = basis[basis.len() - 1].0;
    let floor_end = floor_intercept(&floor, slope) + slope * end as f64;
    // The swing on the series with its trend taken out: a bucket's range would otherwise
    // include the bucket's own growth.
    let flat: Vec<(i64, f64)> = basis
        .iter()
        .map(|&(t, v)| (t, v - slope * (t - basis[0].0) as f64))
        .collect();
    let ranges = buckets(&flat);
    let recent = ranges.len() - ((ranges.len() as f64 * SWING_FRACTION).ceil() as usize).max(1);
    let swings: Vec<f64> = ranges[recent..].iter().map(|(_, lo, hi)| hi - lo).collect();
    let swing = median(swings.clone());
    let swing_sigma = MAD_TO_SIGMA * median(swings.iter().map(|w| (w - swing).abs()).collect());
    // The interval: the slope's confidence interval, and the floor level's own scatter about
    // the fitted line (a robust σ from the residuals' MAD) as a band on the remaining gap.
    let (lo, hi) = sen_interval(&floor, PROJECTION_INTERVAL_Z);
    let intercept = floor_intercept(&floor, slope);
    let residuals: Vec<f64> = floor
        .iter()
        .map(|(x, y)| y - intercept - slope * x)
        .collect();
    let centre = median(residuals.clone());
    let sigma = MAD_TO_SIGMA * median(residuals.iter().map(|r| (r - centre).abs()).collect());
    let band = PROJECTION_INTERVAL_Z * (sigma * sigma + swing_sigma * swing_sigma).sqrt();
    let gap = threshold - floor_end - swing;
    let as_of = ms_to_time(end)?;
    let at =
        |gap: f64, s: f64| as_of + Duration::milliseconds((gap.max(0.0) / s).min(1.0e14) as i64);
    Some(Projection {
        as_of,
        floor: floor_end,
        swing,
        growth_per_hour: slope * 3_600_000.0,
        expected: at(gap, slope),
        earliest: at(gap - band, hi.max(slope)),
        latest: (lo > 0.0).then(|| at(gap + band, lo.min(slope))),
        confidence: assessment.confidence,
    })
}

/// The two-sided confidence interval of the Theil–Sen slope (Sen 1968): the pairwise slopes
/// ranked, cut at `(N ∓ z·√Var(S)) / 2` with Mann–Kendall's variance of S.
pub fn sen_interval(pts: &[(f64, f64)], z: f64) -> (f64, f64) {
    let mut slopes = pairwise_slopes(pts);
    if slopes.is_empty() {
        return (0.0, 0.0);
    }
    slopes.sort_by(|a, b| a.total_cmp(b));
    let n = pts.len() as f64;
    let c = z * (n * (n - 1.0) * (2.0 * n + 5.0) / 18.0).sqrt();
    let big_n = slopes.len() as f64;
    let last = slopes.len() - 1;
    // 1-based ranks M1 = (N − C)/2 and M2 + 1 = (N + C)/2 + 1.
    let m1 = (((big_n - c) / 2.0).floor().max(1.0) as usize - 1).min(last);
    let m2 = (((big_n + c) / 2.0).ceil() as usize).min(last);
    (slopes[m1], slopes[m2])
}

/// The statistics a verdict rests on: overall slope and significance, and the same for the
/// final part of the basis.
struct Trend {
    slope_per_ms: f64,
    z: f64,
    tail_slope: f64,
    tail_z: f64,
}

/// Theil–Sen and Mann–Kendall on the floor, overall and on its final part.
fn plain_trend(floor: &[(f64, f64)]) -> Trend {
    let tail_start = floor.len() - ((floor.len() as f64 * TAIL_FRACTION).ceil() as usize).max(3);
    Trend {
        slope_per_ms: theil_sen(floor),
        z: mann_kendall_z(floor),
        tail_slope: theil_sen(&floor[tail_start..]),
        tail_z: mann_kendall_z(&floor[tail_start..]),
    }
}

/// Seasonal trend: hourly floors, differenced against the same hour a day earlier. A daily
/// cycle cancels out; a leak leaves positive differences. Slope is the median difference per
/// day; significance is a sign test on the differences (z = (pos − neg − 1) / √(pos + neg)).
/// None when there are too few day-over-day pairs.
fn seasonal_trend(seg: &[(i64, f64)]) -> Option<Trend> {
    let start = seg[0].0;
    let width = SEASONAL_BUCKET_SECS * 1000;
    let buckets = ((seg[seg.len() - 1].0 - start) / width + 1) as usize;
    let mut mins = vec![f64::INFINITY; buckets];
    for &(t, v) in seg {
        let b = (((t - start) / width) as usize).min(buckets - 1);
        mins[b] = mins[b].min(v);
    }
    let diffs: Vec<f64> = (SEASONAL_LAG_BUCKETS..buckets)
        .filter(|&i| mins[i].is_finite() && mins[i - SEASONAL_LAG_BUCKETS].is_finite())
        .map(|i| mins[i] - mins[i - SEASONAL_LAG_BUCKETS])
        .collect();
    if diffs.len() < SEASONAL_LAG_BUCKETS {
        return None;
    }
    let day_ms = (SEASONAL_LAG_BUCKETS as i64 * width) as f64;
    let stats = |d: &[f64]| {
        let pos = d.iter().filter(|&&x| x > 0.0).count() as f64;
        let neg = d.iter().filter(|&&x| x < 0.0).count() as f64;
        let z = if pos + neg > 0.0 {
            (pos - neg - (pos - neg).signum()) / (pos + neg).sqrt()
        } else {
            0.0
        };
        (median(d.to_vec()) / day_ms, z)
    };
    let (slope_per_ms, z) = stats(&diffs);
    let tail =
        &diffs[diffs.len() - ((diffs.len() as f64 * TAIL_FRACTION).ceil() as usize).max(3)..];
    let (tail_slope, tail_z) = stats(tail);
    Some(Trend {
        slope_per_ms,
        z,
        tail_slope,
        tail_z,
    })
}

fn is_sufficient(seg: &[(i64, f64)]) -> bool {
    seg.len() >= MIN_POINTS && seg[seg.len() - 1].0 - seg[0].0 >= MIN_SPAN_SECS * 1000
}

fn insufficient(pts: &[(i64, f64)], restarts: usize) -> LeakAssessment {
    let span_min = match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => (b.0 - a.0) / 60_000,
        _ => 0,
    };
    LeakAssessment {
        verdict: LeakVerdict::InsufficientData,
        growth_per_hour: None,
        growth_fraction_of_limit_per_hour: None,
        confidence: 0.0,
        projected_exhaustion: None,
        reached_limit: false,
        final_peak: None,
        basis_start: pts.first().and_then(|p| ms_to_time(p.0)),
        basis_end: pts.last().and_then(|p| ms_to_time(p.0)),
        points_used: pts.len(),
        reason: format!(
            "{} point(s) over {span_min} min{}: need at least {MIN_POINTS} points over {} min in one segment",
            pts.len(),
            if restarts > 0 { format!(" with {restarts} restart(s)") } else { String::new() },
            MIN_SPAN_SECS / 60
        ),
        gaps: 0,
        segments: Vec::new(),
    }
}

fn ms_to_time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// Splits at restarts: a point below `RESTART_DROP_FRACTION` of its predecessor.
fn split_at_restarts(pts: &[(i64, f64)]) -> Vec<&[(i64, f64)]> {
    let mut segments = Vec::new();
    let mut start = 0;
    for i in 1..pts.len() {
        let prev = pts[i - 1].1;
        if prev > 0.0 && pts[i].1 < RESTART_DROP_FRACTION * prev {
            segments.push(&pts[start..i]);
            start = i;
        }
    }
    if start < pts.len() {
        segments.push(&pts[start..]);
    }
    segments
}

/// Equal-time buckets of a segment: up to `MAX_FLOOR_BUCKETS`, at least
/// `MIN_POINTS_PER_BUCKET` points each, as `(time midpoint, min, max)`. Empty buckets (gaps in
/// the data) are skipped.
fn buckets(seg: &[(i64, f64)]) -> Vec<(f64, f64, f64)> {
    let n = (seg.len() / MIN_POINTS_PER_BUCKET).clamp(1, MAX_FLOOR_BUCKETS);
    let start = seg[0].0;
    let span = (seg[seg.len() - 1].0 - start).max(1) as f64;
    let width = span / n as f64;
    let mut range = vec![(f64::INFINITY, f64::NEG_INFINITY); n];
    for &(t, v) in seg {
        let b = (((t - start) as f64 / width) as usize).min(n - 1);
        range[b] = (range[b].0.min(v), range[b].1.max(v));
    }
    range
        .into_iter()
        .enumerate()
        .filter(|(_, (lo, _))| lo.is_finite())
        .map(|(b, (lo, hi))| (start as f64 + (b as f64 + 0.5) * width, lo, hi))
        .collect()
}

/// The lower envelope: the minimum of each bucket (see [`buckets`]), at its time midpoint.
fn floor_points(seg: &[(i64, f64)]) -> Vec<(f64, f64)> {
    buckets(seg).into_iter().map(|(t, lo, _)| (t, lo)).collect()
}

/// The slope between every pair of points (pairs at one x left out).
fn pairwise_slopes(pts: &[(f64, f64)]) -> Vec<f64> {
    let mut slopes = Vec::with_capacity(pts.len() * pts.len().saturating_sub(1) / 2);
    for i in 0..pts.len() {
        for j in i + 1..pts.len() {
            let dx = pts[j].0 - pts[i].0;
            if dx != 0.0 {
                slopes.push((pts[j].1 - pts[i].1) / dx);
            }
        }
    }
    slopes
}

/// Theil–Sen slope: the median of pairwise slopes.
pub fn theil_sen(pts: &[(f64, f64)]) -> f64 {
    let slopes = pairwise_slopes(pts);
    if slopes.is_empty() {
        0.0
    } else {
        median(slopes)
    }
}

/// The intercept matching a Theil–Sen slope: median of `y - slope·x`.
fn floor_intercept(pts: &[(f64, f64)], slope: f64) -> f64 {
    median(pts.iter().map(|(x, y)| y - slope * x).collect())
}

/// Mann–Kendall z statistic (continuity-corrected, no tie correction) for an upward trend.
pub fn mann_kendall_z(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len();
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            let d = pts[j].1 - pts[i].1;
            s += (d > 0.0) as i64 - (d < 0.0) as i64;
        }
    }
    let nf = n as f64;
    let var = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    if var <= 0.0 {
        return 0.0;
    }
    let s = s as f64;
    if s > 0.0 {
        (s - 1.0) / var.sqrt()
    } else if s < 0.0 {
        (s + 1.0) / var.sqrt()
    } else {
        0.0
    }
}

/// Median; NaNs are never passed in (inputs are filtered to finite values).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf approximation, |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    let erf = if x >= 0.0 { y } else { -y };
    0.5 * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn series(n: usize, step_secs: i64, f: impl Fn(usize) -> f64) -> Vec<(DateTime<Utc>, f64)> {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        (0..n)
            .map(|i| (t0 + Duration::seconds(step_secs * i as i64), f(i)))
            .collect()
    }

    /// Deterministic pseudo-noise in [-1, 1].
    fn noise(i: usize) -> f64 {
        let x = (i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17);
        (x % 2001) as f64 / 1000.0 - 1.0
    }

    #[test]
    fn steady_growth_is_a_leak_with_projection() {
        let s = series(200, 300, |i| 30.0 + 0.3 * i as f64 + noise(i));
        let a = assess(&s, Some(100.0));
        assert_eq!(a.verdict, LeakVerdict::Leak, "{}", a.reason);
        let g = a.growth_per_hour.unwrap();
        assert!((g - 3.6).abs() < 0.5, "growth {g}");
        assert!(a.projected_exhaustion.is_some());
    }

    #[test]
    fn sawtooth_with_rising_troughs_is_a_leak() {
        let s = series(240, 300, |i| {
            30.0 + 0.2 * i as f64 + (i % 8) as f64 * 2.5 + noise(i) * 0.5
        });
        assert_eq!(assess(&s, Some(100.0)).verdict, LeakVerdict::Leak);
    }

    #[test]
    fn healthy_sawtooth_is_not_a_leak() {
        let s = series(240, 300, |i| 40.0 + (i % 8) as f64 * 3.0 + noise(i));
        let a = assess(&s, Some(100.0));
        assert_eq!(a.verdict, LeakVerdict::NoLeak, "{}", a.reason);
    }

    #[test]
    fn warm_up_plateau_is_not_a_leak() {
        let s = series(240, 300, |i| {
            20.0 + 30.0 * (1.0 - (-(i as f64) / 15.0).exp()) + noise(i) * 0.5
        });
        let a = assess(&s, Some(100.0));
        assert_eq!(a.verdict, LeakVerdict::NoLeak, "{}", a.reason);
    }

    #[test]
    fn flat_noise_and_decrease_are_not_leaks() {
        let flat = series(200, 300, |i| 50.0 + 2.0 * noise(i));
        assert_eq!(assess(&flat, Some(100.0)).verdict, LeakVerdict::NoLeak);
        let down = series(200, 300, |i| 80.0 - 0.1 * i as f64 + noise(i));
        assert_eq!(assess(&down, Some(100.0)).verdict, LeakVerdict::NoLeak);
    }

    #[test]
    fn spike_at_the_end_is_not_a_leak_but_reaches_the_limit() {
        let s = series(200, 300, |i| if i >= 198 { 97.0 } else { 40.0 + noise(i) });
        let a = assess(&s, Some(100.0));
        assert_eq!(a.verdict, LeakVerdict::NoLeak, "{}", a.reason);
        assert!(a.reached_limit);
    }

    #[test]
    fn too_little_data_is_insufficient() {
        let s = series(5, 300, |i| i as f64);
        assert_eq!(assess(&s, None).verdict, LeakVerdict::InsufficientData);
        let short = series(50, 10, |i| i as f64);
        assert_eq!(assess(&short, None).verdict, LeakVerdict::InsufficientData);
        assert_eq!(assess(&[], None).verdict, LeakVerdict::InsufficientData);
    }

    #[test]
    fn restart_splits_the_series() {
        // A leak, then a restart to a flat healthy process: the last segment decides.
        let s = series(300, 300, |i| {
            if i < 150 {
                20.0 + 0.5 * i as f64
            } else {
                25.0 + noise(i)
            }
        });
        let a = assess(&s, Some(100.0));
        assert_eq!(a.verdict, LeakVerdict::NoLeak, "{}", a.reason);
        assert!(a.reason.contains("restart"));
    }

    #[test]
    fn nan_values_are_ignored() {
        let s = series(200, 300, |i| {
            if i % 10 == 0 {
                f64::NAN
            } else {
                30.0 + 0.3 * i as f64
            }
        });
        assert_eq!(assess(&s, Some(100.0)).verdict, LeakVerdict::Leak);
    }

    #[test]
    fn absurd_values_are_ignored() {
        let s = series(200, 300, |i| if i % 2 == 0 { 1.0e308 } else { -1.0e308 });
        let a = assess(&s, Some(f64::MAX));
        assert_eq!(a.verdict, LeakVerdict::InsufficientData);
        let mixed = series(200, 300, |i| {
            if i == 50 {
                1.0e300
            } else {
                30.0 + 0.3 * i as f64
            }
        });
        assert_eq!(assess(&mixed, Some(100.0)).verdict, LeakVerdict::Leak);
    }

    /// A GC sawtooth on a floor rising 0.5 %/h from 40 %: the peaks (floor + 6) reach 100 % at
    /// hour 108.
    fn leaking_sawtooth(hours: usize) -> Vec<(DateTime<Utc>, f64)> {
        series(hours * 12, 300, |i| {
            let h = i as f64 / 12.0;
            40.0 + 0.5 * h + 6.0 * ((i % 7) as f64 / 6.0) + 0.3 * noise(i)
        })
    }

    #[test]
    fn a_leak_is_projected_to_reach_its_limit_at_its_peaks() {
        let s = leaking_sawtooth(48);
        let p = project(&s, Some(100.0), 100.0).expect("a leak with a limit is projected");
        let t0 = s[0].0;
        let truth = t0 + Duration::hours(108);
        let err_h = (p.expected - truth).num_minutes().abs() as f64 / 60.0;
        assert!(
            err_h < 6.0,
            "expected {} vs {truth}: {err_h:.1} h off",
            p.expected
        );
        assert!(p.earliest <= p.expected, "{p:?}");
        let latest = p.latest.expect("a clear leak has a bounded interval");
        assert!(p.expected <= latest, "{p:?}");
        assert!(p.earliest <= truth && truth <= latest, "{p:?}");
        assert!((p.swing - 6.0).abs() < 1.5, "swing {}", p.swing);
        // The floor alone would reach 100 % twelve hours later.
        let floor_only = t0 + Duration::hours(120);
        assert!(p.expected < floor_only - Duration::hours(6), "{p:?}");
    }

    #[test]
    fn no_projection_without_a_leak_or_a_limit() {
        let healthy = series(480, 300, |i| 40.0 + (i % 8) as f64 * 3.0 + noise(i));
        assert_eq!(project(&healthy, Some(100.0), 100.0), None);
        assert_eq!(project(&leaking_sawtooth(48), None, 100.0), None);
        assert_eq!(project(&leaking_sawtooth(48), Some(f64::NAN), 100.0), None);
    }

    #[test]
    fn a_series_at_its_limit_projects_to_now() {
        let s = leaking_sawtooth(110);
        let p = project(&s, Some(100.0), 100.0).unwrap();
        assert_eq!(p.expected, s[s.len() - 1].0, "{p:?}");
        // A lower threshold (where this deployment's instances died) comes sooner: the peaks
        // reach 90 % at hour 88 instead of 100 % at hour 108.
        let early = project(&leaking_sawtooth(48), Some(100.0), 90.0).unwrap();
        let t0 = s[0].0;
        let err_h = (early.expected - (t0 + Duration::hours(88)))
            .num_minutes()
            .abs() as f64
            / 60.0;
        assert!(err_h < 6.0, "{early:?}");
    }

    #[test]
    fn sen_interval_brackets_the_slope() {
        let pts: Vec<(f64, f64)> = (0..24)
            .map(|i| (i as f64, 2.0 * i as f64 + noise(i) * 3.0))
            .collect();
        let (lo, hi) = sen_interval(&pts, PROJECTION_INTERVAL_Z);
        let s = theil_sen(&pts);
        assert!(lo < s && s < hi, "{lo} {s} {hi}");
        assert!(lo > 1.5 && hi < 2.5, "{lo} {hi}");
    }

    #[test]
    fn normal_cdf_is_sane() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_cdf(2.33) - 0.9901).abs() < 1e-3);
    }
}
