//! Parsing of the time values users type and exported files carry: durations (`90s`, `15m`,
//! `24h`, `7d`), instants (RFC 3339, unix seconds or milliseconds), and "since" values that may
//! be either.

use chrono::{DateTime, Duration, TimeZone, Utc};

/// Unix timestamps above this are taken as milliseconds (it is 2286-11-20 in seconds).
const MAX_UNIX_SECONDS: f64 = 10_000_000_000.0;

/// Parses `30s`, `15m`, `24h`, `7d`, `2w`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (expected e.g. 90s, 15m, 24h, 7d)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" | "secs" => n,
        "m" | "min" | "mins" => n * 60.0,
        "h" | "hr" | "hrs" => n * 3600.0,
        "d" | "day" | "days" => n * 86_400.0,
        "w" | "week" | "weeks" => n * 7.0 * 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown duration unit `{unit}` (use s, m, h, d, w)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=3.2e9).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::milliseconds((secs * 1000.0).round() as i64))
}

/// Parses an instant: RFC 3339 (`2026-01-05T10:00:00Z`), a naive `YYYY-MM-DD HH:MM:SS` taken
/// as UTC, or unix seconds / milliseconds (fractions allowed).
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(n) = s.parse::<f64>() {
        return unix_to_instant(n).ok_or_else(|| format!("`{s}` is out of range as a unix time"));
    }
    Err(format!(
        "`{}` is not a timestamp (expected RFC 3339 or unix seconds)",
        truncate(s, 64)
    ))
}

/// Unix seconds, or milliseconds when the value is too large to be seconds.
pub fn unix_to_instant(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let ms = if n > MAX_UNIX_SECONDS { n } else { n * 1000.0 };
    if ms > 1.0e15 {
        return None;
    }
    Utc.timestamp_millis_opt(ms.round() as i64).single()
}

/// A `--since` value: a duration back from `now`, or an instant.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    match parse_duration(s) {
        Ok(d) => Ok(now - d),
        Err(dur_err) => parse_instant(s).map_err(|_| {
            format!("{dur_err}; nor is it a timestamp (expected e.g. 24h or 2026-01-05T00:00:00Z)")
        }),
    }
}

/// Cuts `s` to at most `max` characters for error messages.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::minutes(15));
        assert_eq!(parse_duration("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("45").unwrap(), Duration::seconds(45));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn instants() {
        let t = parse_instant("2026-01-05T10:00:00Z").unwrap();
        assert_eq!(t.timestamp(), 1_767_607_200);
        assert_eq!(parse_instant("1767607200").unwrap(), t);
        assert_eq!(parse_instant("1767607200000").unwrap(), t);
        assert_eq!(parse_instant("2026-01-05 10:00:00").unwrap(), t);
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("-5").is_err());
    }

    #[test]
    fn since_accepts_both() {
        let now = parse_instant("2026-01-05T10:00:00Z").unwrap();
        assert_eq!(
            parse_since("1h", now).unwrap(),
            parse_instant("2026-01-05T09:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2026-01-01T00:00:00Z", now).unwrap(),
            parse_instant("2026-01-01T00:00:00Z").unwrap()
        );
        assert!(parse_since("soon", now).is_err());
    }
}
