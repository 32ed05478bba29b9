//! Reference leak rules that epitaph's detector is measured against (never used for verdicts):
//!
//! - the Prometheus habit: `predict_linear(mem[6h], 24h) >= limit`, an OLS line through the
//!   last six hours extrapolated a day ahead;
//! - Coroot's published rule: split the series at drops of more than 50 %, take the last
//!   segment, require a positive OLS slope, a tail slope of at least 0.3× the overall slope,
//!   and growth of at least 5 % of the limit per hour (Coroot alerts at 10 %/h; 5 %/h is its
//!   warning level, the more sensitive of the two, used here).

use chrono::{DateTime, Utc};

/// `predict_linear` look-back.
pub const PREDICT_LINEAR_RANGE_SECS: f64 = 6.0 * 3600.0;
/// `predict_linear` horizon.
pub const PREDICT_LINEAR_HORIZON_SECS: f64 = 24.0 * 3600.0;
/// Coroot: a drop below this fraction of the previous point is a restart.
pub const COROOT_RESTART_DROP: f64 = 0.5;
/// Coroot: the tail (last third) must keep this fraction of the overall slope.
pub const COROOT_TAIL_RATIO: f64 = 0.3;
/// Coroot: growth per hour, as a fraction of the limit, to report.
pub const COROOT_MIN_GROWTH_PER_HOUR: f64 = 0.05;

/// Ordinary least squares slope (value per second) of `(seconds, value)`.
fn ols_slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

fn seconds(points: &[(DateTime<Utc>, f64)]) -> Vec<(f64, f64)> {
    let t0 = points.first().map(|p| p.0.timestamp_millis()).unwrap_or(0);
    points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|p| ((p.0.timestamp_millis() - t0) as f64 / 1000.0, p.1))
        .collect()
}

/// `predict_linear(x[6h], 24h) >= limit`, evaluated at the last sample.
pub fn predict_linear_alerts(points: &[(DateTime<Utc>, f64)], limit: f64) -> bool {
    let pts = seconds(points);
    let Some(&(end, _)) = pts.last() else {
        return false;
    };
    let recent: Vec<(f64, f64)> = pts
        .into_iter()
        .filter(|p| p.0 >= end - PREDICT_LINEAR_RANGE_SECS)
        .collect();
    if recent.len() < 2 {
        return false;
    }
    let slope = ols_slope(&recent);
    let n = recent.len() as f64;
    let mx = recent.iter().map(|p| p.0).sum::<f64>() / n;
    let my = recent.iter().map(|p| p.1).sum::<f64>() / n;
    let at_end = my + slope * (end - mx);
    at_end + slope * PREDICT_LINEAR_HORIZON_SECS >= limit
}

/// Coroot's rule, as described in the module documentation.
pub fn coroot_alerts(points: &[(DateTime<Utc>, f64)], limit: f64) -> bool {
    let pts = seconds(points);
    let mut start = 0;
    for i in 1..pts.len() {
        if pts[i - 1].1 > 0.0 && pts[i].1 < COROOT_RESTART_DROP * pts[i - 1].1 {
            start = i;
        }
    }
    let seg = &pts[start..];
    if seg.len() < 3 {
        return false;
    }
    let slope = ols_slope(seg);
    let tail = ols_slope(&seg[seg.len() - seg.len().div_ceil(3)..]);
    slope > 0.0
        && tail >= COROOT_TAIL_RATIO * slope
        && slope * 3600.0 >= COROOT_MIN_GROWTH_PER_HOUR * limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn series(n: i64, f: impl Fn(i64) -> f64) -> Vec<(DateTime<Utc>, f64)> {
        let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        (0..n)
            .map(|i| (t0 + Duration::minutes(5 * i), f(i)))
            .collect()
    }

    #[test]
    fn baselines_behave_as_documented() {
        // 12 %/h of a 100 limit: both fire.
        let fast = series(60, |i| 10.0 + i as f64);
        assert!(predict_linear_alerts(&fast, 100.0));
        assert!(coroot_alerts(&fast, 100.0));
        // 1.2 %/h: Coroot stays quiet, predict_linear fires only if a day ahead crosses.
        let slow = series(60, |i| 10.0 + 0.1 * i as f64);
        assert!(!coroot_alerts(&slow, 100.0));
        assert!(!predict_linear_alerts(&slow, 100.0));
        let flat = series(60, |_| 50.0);
        assert!(!predict_linear_alerts(&flat, 100.0) && !coroot_alerts(&flat, 100.0));
    }
}
