//! Reading an instance's events backwards in pages — Loki's `query_range` with
//! `direction=backward`, Splunk's newest-first export cut by `| head N` — so that the final
//! window comes back complete and each event exactly once.
//!
//! A page holds the newest `limit` events before an exclusive end. When a page is full, the
//! next one ends one tick after the oldest timestamp seen: events sharing that timestamp are
//! asked for again (a page boundary can fall among them), and those already kept are dropped
//! by identity, counted (identical lines at one timestamp are distinct events). Reading stops
//! when a page comes back short (nothing older is left), once the window before the final
//! event is covered, past the byte cap, or after [`MAX_PAGES`] — then, or when more events
//! share one timestamp than a page holds, the answer says older lines may be missing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::LogEvent;

/// Pages read per instance at most, whatever the window holds.
pub const MAX_PAGES: usize = 20;

/// One event of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Nanoseconds since the epoch.
    pub ns: i64,
    /// What tells it apart from another event at the same time (stream and line).
    pub identity: String,
    pub message: String,
}

/// What to do after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Everything needed is read.
    Done,
    /// Ask for the page that ends (exclusively) at this many nanoseconds.
    Before(i64),
}

/// Events read so far, and where the next page ends.
#[derive(Debug)]
pub struct Backwards {
    tick_ns: i64,
    window_ns: i64,
    max_bytes: usize,
    /// Newest first.
    kept: Vec<Entry>,
    /// The oldest timestamp of the last full page, and how many events of each identity at it
    /// are kept already.
    edge: Option<(i64, HashMap<String, usize>)>,
    bytes: usize,
    pages: usize,
    /// Older events in the window may be missing (see the module doc).
    pub incomplete: bool,
}

impl Backwards {
    /// `tick_ns`: the backend's time resolution (1 for Loki's nanoseconds, 1,000 for
    /// Splunk's microseconds); `window`: the last-words window that must be covered before the
    /// final event; `max_bytes`: the byte cap.
    pub fn new(tick_ns: i64, window: chrono::Duration, max_bytes: usize) -> Self {
        Backwards {
            tick_ns: tick_ns.max(1),
            window_ns: window.num_nanoseconds().unwrap_or(i64::MAX),
            max_bytes,
            kept: Vec::new(),
            edge: None,
            bytes: 0,
            pages: 0,
            incomplete: false,
        }
    }

    /// Takes one page (in any order) and says whether to read another. `full`: the server
    /// answered as many entries as a page holds (some may have been unusable and left out of
    /// `page`), so older ones may remain.
    pub fn add_page(&mut self, mut page: Vec<Entry>, full: bool) -> Next {
        self.pages += 1;
        page.sort_by_key(|e| std::cmp::Reverse(e.ns));
        let oldest = page.last().map(|e| e.ns);
        let previous_edge = self.edge.as_ref().map(|(ns, _)| *ns);
        if let Some((edge_ns, seen)) = &mut self.edge {
            page.retain(|e| {
                if e.ns > *edge_ns {
                    // Newer than the last page's oldest: read already (a server ignoring `end`).
                    return false;
                }
                if e.ns == *edge_ns {
                    if let Some(n) = seen.get_mut(&e.identity).filter(|n| **n > 0) {
                        *n -= 1;
                        return false;
                    }
                }
                true
            });
        }
        for e in page {
            self.bytes += e.message.len();
            self.kept.push(e);
        }
        let Some(oldest) = oldest.filter(|_| full) else {
            return Next::Done; // a short page: nothing older is left
        };
        if let (Some(newest), Some(last)) = (self.kept.first(), self.kept.last()) {
            if last.ns < newest.ns.saturating_sub(self.window_ns) {
                return Next::Done; // the window before the final event is covered
            }
        }
        if self.bytes > self.max_bytes {
            return Next::Done; // the newest lines under the cap are kept
        }
        if self.pages >= MAX_PAGES {
            self.incomplete = true;
            return Next::Done;
        }
        if previous_edge == Some(oldest) {
            // A whole page at one timestamp: more events share it than a page holds. Step
            // past it (some of them are lost) rather than ask for the same page forever.
            self.incomplete = true;
            self.edge = None;
            return Next::Before(oldest);
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for e in self.kept.iter().rev().take_while(|e| e.ns == oldest) {
            *seen.entry(e.identity.clone()).or_insert(0) += 1;
        }
        self.edge = Some((oldest, seen));
        Next::Before(oldest.saturating_add(self.tick_ns))
    }

    /// Pages read so far.
    #[cfg(test)]
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The events read, oldest first (events at one timestamp in the order they were logged,
    /// as far as the backend says).
    pub fn into_events(self) -> Vec<LogEvent> {
        let mut kept = self.kept;
        kept.reverse();
        kept.sort_by_key(|e| e.ns);
        kept.into_iter()
            .filter_map(|e| {
                Some(LogEvent {
                    timestamp: from_ns(e.ns)?,
                    message: e.message,
                })
            })
            .collect()
    }
}

/// Nanoseconds since the epoch as a time.
pub fn from_ns(ns: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// A time as nanoseconds since the epoch (saturating outside 1677–2262).
pub fn to_ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn e(ns: i64, line: &str) -> Entry {
        Entry {
            ns,
            identity: line.into(),
            message: line.into(),
        }
    }

    /// A server holding `all`: the newest `limit` entries before `end`.
    fn page(all: &[Entry], end: i64, limit: usize) -> Vec<Entry> {
        let mut v: Vec<Entry> = all.iter().filter(|x| x.ns < end).cloned().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.ns));
        v.truncate(limit);
        v
    }

    fn read_all(all: &[Entry], limit: usize, window_s: i64) -> (Vec<String>, usize, bool) {
        let mut b = Backwards::new(1, chrono::Duration::seconds(window_s), 1 << 20);
        let mut end = 1000 * S;
        loop {
            let p = page(all, end, limit);
            let full = p.len() >= limit;
            match b.add_page(p, full) {
                Next::Done => break,
                Next::Before(e) => end = e,
            }
        }
        let pages = b.pages();
        let incomplete = b.incomplete;
        (
            b.into_events().into_iter().map(|e| e.message).collect(),
            pages,
            incomplete,
        )
    }

    #[test]
    fn pages_overlapping_at_equal_timestamps_give_each_line_once() {
        // Two lines share t=50 s and fall across a page edge; two share t=30 s and end one.
        let all = vec![
            e(10 * S, "a"),
            e(30 * S, "b1"),
            e(30 * S, "b2"),
            e(40 * S, "c"),
            e(50 * S, "d1"),
            e(50 * S, "d2"),
            e(60 * S, "e"),
            e(70 * S, "f"),
        ];
        let (lines, pages, incomplete) = read_all(&all, 3, 3600);
        assert_eq!(lines.len(), 8, "{lines:?}");
        let mut sorted = lines.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "each once: {lines:?}");
        assert_eq!(lines[0], "a");
        assert_eq!(lines[7], "f");
        assert_eq!(pages, 5, "{pages}");
        assert!(!incomplete);
    }

    #[test]
    fn identical_lines_at_one_time_are_distinct_events() {
        let all = vec![
            e(10 * S, "retry"),
            e(20 * S, "retry"),
            e(20 * S, "retry"),
            e(20 * S, "retry"),
            e(30 * S, "x"),
        ];
        let (lines, pages, incomplete) = read_all(&all, 4, 3600);
        assert_eq!(lines, ["retry", "retry", "retry", "retry", "x"]);
        assert_eq!(pages, 3);
        assert!(!incomplete);
    }

    #[test]
    fn stops_once_the_window_is_covered() {
        let all: Vec<Entry> = (0..100).map(|i| e(i * S, &format!("l{i}"))).collect();
        let (lines, pages, _) = read_all(&all, 10, 15);
        // The final line is at 99 s; the window reaches 84 s: two pages of ten suffice (the
        // second repeats the first's oldest line, kept once).
        assert_eq!(pages, 2);
        assert_eq!(lines.len(), 19);
        assert_eq!(lines[0], "l81");
    }

    #[test]
    fn more_lines_at_one_time_than_a_page_is_bounded_and_flagged() {
        let mut all: Vec<Entry> = (0..7).map(|i| e(50 * S, &format!("same{i}"))).collect();
        all.push(e(10 * S, "old"));
        let (lines, pages, incomplete) = read_all(&all, 3, 3600);
        assert!(incomplete);
        assert!(pages <= 4, "{pages}");
        assert!(lines.contains(&"old".to_string()));
    }

    #[test]
    fn nanoseconds_round_trip() {
        let t = from_ns(1_767_520_721_003_000_001).unwrap();
        assert_eq!(to_ns(t), 1_767_520_721_003_000_001);
    }
}
