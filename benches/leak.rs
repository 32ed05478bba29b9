//! Leak detector speed: `leak::assess` on 10,000-point series of several shapes (target: at most
//! 1 ms each on one core), against a reference measured in the same run: sorting the same
//! 10,000 values once (`sort_by(total_cmp)`), the cost of one O(n log n) pass over the data.
//! Run with `cargo bench --bench leak`.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use epitaph::analysis::leak;

const POINTS: usize = 10_000;
const REPEATS: usize = 200;

fn series(shape: &str) -> Vec<(DateTime<Utc>, f64)> {
    let t0 = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..POINTS)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let noise = (x % 1000) as f64 / 500.0 - 1.0;
            let s = i as f64;
            let v = match shape {
                "linear leak" => 20.0 + s * 0.007 + noise,
                "sawtooth leak" => 20.0 + s * 0.005 + (s % 30.0) * 0.4 + noise,
                "flat" => 50.0 + noise,
                _ => 40.0 + 10.0 * (s / 1440.0 * std::f64::consts::TAU).sin() + noise,
            };
            (t0 + Duration::seconds(60 * i as i64), v)
        })
        .collect()
}

fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[REPEATS / 2]
}

fn main() {
    println!(
        "leak::assess on {POINTS}-point series (1-minute samples, ~7 days), median of {REPEATS}:"
    );
    for shape in ["linear leak", "sawtooth leak", "flat", "daily cycle"] {
        let s = series(shape);
        let values: Vec<f64> = s.iter().map(|p| p.1).collect();
        let reference = median_ns(|| {
            let mut v = values.clone();
            v.sort_by(|a, b| a.total_cmp(b));
            black_box(v);
        });
        let t = median_ns(|| {
            black_box(leak::assess(black_box(&s), Some(100.0)));
        });
        let verdict = leak::assess(&s, Some(100.0)).verdict.as_str();
        println!(
            "  {shape:<14} {:>8.1} µs  ({:.2}× sorting the values: {:.1} µs)  verdict {verdict}",
            t / 1000.0,
            t / reference,
            reference / 1000.0
        );
    }
}
