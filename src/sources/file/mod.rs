//! The `file` backend: reads what users can export with standard tools, so epitaph works offline
//! and ships an embedded default (the simulator writes these formats).
//!
//! - activities: `aws autoscaling describe-scaling-activities` JSON; inventory from
//!   `aws autoscaling describe-auto-scaling-groups` and `aws ec2 describe-instances` JSON;
//! - logs: JSON lines, or `aws logs filter-log-events` / `get-log-events` JSON (the latter's
//!   instance from the file name);
//! - metrics: CSV `timestamp,instance_id,value`, a Prometheus `query_range` response, or
//!   `aws cloudwatch get-metric-data` / `get-metric-statistics` JSON.
//!
//! A path may be a file or a directory (read recursively, hidden files skipped, sorted order).
//! One rule in every source: bad records inside a usable file are skipped and counted with
//! their file:line; a whole file that cannot be used (empty, unparsable, not a known export,
//! nothing in it usable) is one input error naming it; an export with a pagination token left
//! in it (`PAGINATION_TOKENS`) is a warning naming the file and the flag to drop. Both are
//! reported as [`crate::sources::InputProblems`] and leave the scan incomplete.
//!
//! Memory follows what is used, not the size of the exports: JSON is deserialised into the
//! fields epitaph reads (`json.rs`), never into a `serde_json::Value` of a whole file; the log
//! and metrics indexes keep where an instance's events and samples are (runs: byte spans of
//! consecutive ones, read back when fetched), not the lines or samples themselves; CSV metric
//! files are read as a stream. A file is stamped without being read
//! (`file_stamp`: device, inode, size, modification and change times); what a clean read of
//! it proved is kept in the state store with its stamp, and trusted while the stamp holds (an
//! activities file, `activities/`; early warning's series, `pipeline/early.rs`).

mod activities;
mod json;
mod logs;
mod metrics;

pub use activities::FileActivities;
pub use logs::FileLogs;
pub use metrics::FileMetrics;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::timefmt::{parse_instant, truncate};

pub use crate::sources::MAX_SKIPPED_KEPT;

/// Files under `path` (itself if a file), recursively, sorted, hidden entries skipped.
pub(crate) fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(|e| Error::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The configured path of a file source, resolved, or an error naming the key.
pub(crate) fn required_path(key: &str, path: &Option<PathBuf>) -> Result<PathBuf> {
    path.clone()
        .ok_or_else(|| Error::Config(vec![format!("{key}.path: required for kind = \"file\"")]))
}

/// What a folder of exports looked like when it was indexed: every file's path and
/// [`file_stamp`]. A different fingerprint means the index is stale.
type Fingerprint = Vec<(PathBuf, String)>;

fn fingerprint(path: &Path) -> Result<Fingerprint> {
    list_files(path)?
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
            Ok((p, file_stamp(&m)))
        })
        .collect()
}

/// A file modified this recently may still be written within the same timestamp tick, so its
/// stamp does not vouch for its content yet (as git's "racily clean" entries).
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// What a file looks like without reading it: device, inode, size, and modification and
/// change times (nanoseconds). A stamp is what epitaph trusts to say a file is unchanged: a
/// write that keeps all five the same (a same-size rewrite within one timestamp tick, or
/// content changed and both times set back, which needs root for the change time) goes
/// unseen. A file modified within [`RACY_WINDOW`] of being stamped gets a stamp marked
/// `racy`, which vouches for nothing ([`stamp_trusted`]), so it is read again next time.
pub(crate) fn file_stamp(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    let mut text = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "dev={} ino={} size={} mtime={}.{:09} ctime={}.{:09}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    };
    #[cfg(not(unix))]
    let mut text = format!("size={} mtime={:?}", meta.len(), meta.modified().ok());
    let recent = meta
        .modified()
        .ok()
        .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
        .is_none_or(|age| age < RACY_WINDOW);
    if recent {
        text.push_str(RACY);
    }
    text
}

/// Whether a stamp can vouch for a file: not [`RACY_WINDOW`]-recent when it was taken. Two
/// racy stamps are never taken as the same file state, even when their text is equal.
pub fn stamp_trusted(stamp: &str) -> bool {
    !stamp.ends_with(RACY)
}

/// The mark of a racy stamp.
const RACY: &str = " racy";

/// Every file under `path` with its [`file_stamp`], without reading them.
pub(crate) fn stamps(path: &Path) -> Result<Vec<crate::model::InputStamp>> {
    Ok(stamps_of(fingerprint(path)?))
}

fn stamps_of(fp: Fingerprint) -> Vec<crate::model::InputStamp> {
    fp.into_iter()
        .map(|(p, stamp)| crate::model::InputStamp {
            path: p.display().to_string(),
            stamp,
            proved: serde_json::Value::Null,
        })
        .collect()
}

/// A file index built off the async threads and shared: the first caller pays, later and
/// concurrent callers get the same `Arc`. After [`FileIndex::mark_stale`] (at the start of each
/// scan) the next caller compares the files' fingerprint and rebuilds only if they changed, so
/// a long-running `epitaph serve` sees new exports without re-reading unchanged ones.
pub(crate) struct FileIndex<T> {
    current: std::sync::Mutex<Option<(Fingerprint, std::sync::Arc<T>)>>,
    build: tokio::sync::Mutex<()>,
    recheck: std::sync::atomic::AtomicBool,
}

impl<T: Send + Sync + 'static> FileIndex<T> {
    pub fn new() -> Self {
        FileIndex {
            current: std::sync::Mutex::new(None),
            build: tokio::sync::Mutex::new(()),
            recheck: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The index as last built, if any.
    pub fn current(&self) -> Option<std::sync::Arc<T>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, i)| i.clone())
    }

    /// The stamps of the files the current index was built from (taken before they were
    /// read), if one was built.
    pub fn stamps(&self) -> Option<Vec<crate::model::InputStamp>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(fp, _)| stamps_of(fp.clone()))
    }

    /// The next `get` checks whether the files changed.
    pub fn mark_stale(&self) {
        self.recheck
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn get(
        &self,
        path: &Path,
        build: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<std::sync::Arc<T>> {
        use std::sync::atomic::Ordering;
        if !self.recheck.load(Ordering::SeqCst) {
            if let Some(i) = self.current() {
                return Ok(i);
            }
        }
        let _building = self.build.lock().await;
        let recheck = self.recheck.swap(false, Ordering::SeqCst);
        let known = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let owned = path.to_path_buf();
        let source = || format!("file:{}", path.display());
        if let Some((fp, index)) = known {
            if !recheck {
                return Ok(index);
            }
            let p = owned.clone();
            let now = tokio::task::spawn_blocking(move || fingerprint(&p))
                .await
                .map_err(|e| Error::source(source(), e.to_string()))??;
            if now == fp && fp.iter().all(|(_, stamp)| stamp_trusted(stamp)) {
                return Ok(index);
            }
            tracing::info!(path = %path.display(), "exports changed; re-indexing");
        }
        let (fp, index) = tokio::task::spawn_blocking(move || {
            let fp = fingerprint(&owned)?;
            Ok::<_, Error>((fp, std::sync::Arc::new(build()?)))
        })
        .await
        .map_err(|e| Error::source(source(), e.to_string()))??;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((fp, index.clone()));
        Ok(index)
    }
}

pub(crate) use crate::sources::SkipLog;

/// An index that knows what it skipped and which of its inputs could not be used: what a
/// file source reports for the scan from its [`FileIndex`].
pub(crate) trait IndexedInputs {
    fn skip_log(&self) -> &SkipLog;
    fn problems(&self) -> &crate::sources::InputProblems;
}

impl<T: IndexedInputs + Send + Sync + 'static> FileIndex<T> {
    /// The skipped records of the index as last built (count and report); none before it is.
    pub fn skipped(&self) -> (usize, Vec<crate::sources::Skipped>) {
        self.current()
            .map(|i| (i.skip_log().count, i.skip_log().report()))
            .unwrap_or_default()
    }

    /// The skipped records grouped by input file and kind.
    pub fn skipped_by_input(&self) -> Vec<crate::sources::SkippedGroup> {
        self.current()
            .map(|i| i.skip_log().groups.rows())
            .unwrap_or_default()
    }

    /// The inputs the index could not use (errors and warnings naming them).
    pub fn input_problems(&self) -> crate::sources::InputProblems {
        self.current()
            .map(|i| i.problems().clone())
            .unwrap_or_default()
    }
}

/// Top-level keys in which the AWS CLI leaves a pagination token when it did not fetch every
/// page: `--max-items` writes the CLI's own `NextToken`, `--no-paginate` the service's key
/// (`NextToken`, or `nextToken` for CloudWatch Logs).
pub(crate) const PAGINATION_TOKENS: [&str; 2] = ["NextToken", "nextToken"];

/// A warning naming the file when an export still holds a pagination token (key, its string
/// value if any, in the order of [`PAGINATION_TOKENS`]): the `aws` command stopped before the
/// last page, so what the file holds is incomplete. The flag to drop is told by the token: the
/// CLI's own (`--max-items`) is base64 JSON holding `boto_truncate_amount`; a service's token
/// means `--no-paginate`.
pub(crate) fn token_warning(tokens: [(&str, Option<&str>); 2], origin: &str) -> Option<String> {
    let (key, token) = tokens
        .into_iter()
        .find_map(|(k, t)| t.filter(|t| !t.trim().is_empty()).map(|t| (k, t)))?;
    let flag = if is_cli_token(token) {
        "--max-items"
    } else {
        "--no-paginate"
    };
    Some(format!(
        "{origin}: truncated export: it ends with a pagination token (`{key}`), so the `aws` command stopped before the last page; export it again without {flag} (the CLI then fetches every page)"
    ))
}

/// Whether a pagination token is the AWS CLI's own (`--max-items`): base64 of a JSON object
/// with `boto_truncate_amount`.
fn is_cli_token(token: &str) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::with_capacity(token.len() * 3 / 4);
    for c in token.trim_end_matches('=').bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            return false;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    serde_json::from_slice::<serde_json::Value>(&out)
        .is_ok_and(|v| v.get("boto_truncate_amount").is_some())
}

/// The message for an empty (or whitespace-only) export file.
pub(crate) const EMPTY_FILE: &str =
    "empty file (what a failed `aws …` command leaves behind): export it again, or remove it";

/// Whether a file holds nothing but whitespace.
pub(crate) fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// The JSON documents in an export: one, or several written one after the other (pages
/// appended with `>>`). Empty files and syntax errors are errors naming `origin` (and
/// line:column).
pub(crate) fn json_documents(bytes: &[u8], origin: &str) -> Result<Vec<serde_json::Value>> {
    if is_blank(bytes) {
        return Err(Error::input(origin, EMPTY_FILE));
    }
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .map(|doc| {
            doc.map_err(|e| {
                Error::input(
                    format!("{origin}:{}:{}", e.line(), e.column()),
                    format!("invalid JSON: {e}"),
                )
            })
        })
        .collect()
}

/// The instance an export file is named after: the first instance id in its file name, else
/// in the nearest folder name below `root` naming one (`logs/i-0123…/app.json`).
pub(crate) fn instance_from_path(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut names: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        // `root` is the file itself.
        names.extend(file.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    names
        .iter()
        .rev()
        .find_map(|n| find_instance_id(n).map(str::to_string))
}

/// Values that mean "no sample here", as exports write gaps (Prometheus and Go `NaN`, pandas
/// `nan`/`NaN`/`<NA>`, spreadsheets an empty cell, JSON-ish `null`/`None`, `±Inf`): kept as NaN
/// points, which the leak detector skips and counts.
pub const GAP_MARKERS: [&str; 12] = [
    "", "nan", "-nan", "null", "none", "na", "<na>", "n/a", "inf", "+inf", "-inf", "infinity",
];

/// Whether a CSV cell is a gap (see [`GAP_MARKERS`]; case does not matter).
pub fn is_gap(cell: &str) -> bool {
    let c = cell.trim().trim_matches('"').to_ascii_lowercase();
    GAP_MARKERS.contains(&c.as_str()) || c == "+infinity" || c == "-infinity"
}

/// Parses one memory series as CSV `timestamp,value` (RFC 3339 or unix seconds), the input of
/// `epitaph leak`. A header line is allowed; blank lines and `#` comments are skipped; a gap
/// (an empty value, `NaN`, `null`, `±Inf`…: [`GAP_MARKERS`]) is a NaN point; anything else
/// malformed is an error naming `origin:line`.
pub fn parse_series_csv(bytes: &[u8], origin: &str) -> Result<Vec<(DateTime<Utc>, f64)>> {
    let mut points = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{origin}:{}", i + 1);
        let mut cols = line.split(',').map(str::trim);
        let (Some(ts), Some(val), None) = (cols.next(), cols.next(), cols.next()) else {
            return Err(Error::input(at, "expected two columns: timestamp,value"));
        };
        let value = val.parse::<f64>();
        if points.is_empty() && value.is_err() && parse_instant(ts).is_err() {
            continue; // a header line
        }
        let t = parse_instant(ts).map_err(|e| Error::input(&at, e))?;
        if is_gap(val) {
            points.push((t, f64::NAN));
            continue;
        }
        let v = value.ok().filter(|v| v.is_finite()).ok_or_else(|| {
            Error::input(
                &at,
                format!(
                    "`{}` is neither a number nor a gap (empty, NaN, null, ±Inf)",
                    truncate(val, 40)
                ),
            )
        })?;
        points.push((t, v));
    }
    Ok(points)
}

/// A file none of whose records could be used is refused as a whole (one input error naming
/// it, not a few skipped records): the message, or None when something in it was used.
pub(crate) fn refused_file(
    origin: &str,
    noun: &str,
    used: usize,
    skipped: &SkipLog,
) -> Option<String> {
    let first = skipped
        .kept
        .first()
        .filter(|_| used == 0 && skipped.count > 0)?;
    Some(format!(
        "{origin}: no usable {noun}: all {} record(s) refused, the first at {}: {}",
        skipped.count, first.location, first.reason
    ))
}

/// Finds an instance id (`i-` and 8 or 17 hex digits) in a string.
pub(crate) fn find_instance_id(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(pos) = s[i..].find("i-") {
        let start = i + pos;
        let boundary_ok = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let hex_len = bytes[start + 2..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        let end = start + 2 + hex_len;
        let after_ok = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if boundary_ok && after_ok && (hex_len == 8 || hex_len == 17) {
            return Some(&s[start..end]);
        }
        i = start + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids() {
        assert_eq!(
            find_instance_id("i-0123456789abcdef0"),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(
            find_instance_id("web/i-0123abcd/app.log"),
            Some("i-0123abcd")
        );
        assert_eq!(
            find_instance_id("Terminating EC2 instance: i-0123456789abcdef0"),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(find_instance_id("i-123"), None);
        assert_eq!(find_instance_id("xi-0123abcd"), None);
        assert_eq!(find_instance_id("i-0123abcdz"), None);
        assert_eq!(find_instance_id("é i-0123abcd"), Some("i-0123abcd"));
    }

    #[test]
    fn instance_from_file_or_folder_name() {
        let root = Path::new("/x/logs");
        assert_eq!(
            instance_from_path(root, Path::new("/x/logs/web/i-0123456789abcdef0.json")).as_deref(),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(
            instance_from_path(root, Path::new("/x/logs/i-0123abcd/app.json")).as_deref(),
            Some("i-0123abcd")
        );
        assert_eq!(
            instance_from_path(root, Path::new("/x/logs/web/app.json")),
            None
        );
        // The folder holding the root is not a name the user chose for this file.
        assert_eq!(
            instance_from_path(
                Path::new("/x/i-0123abcd"),
                Path::new("/x/i-0123abcd/a.json")
            ),
            None
        );
        let single = Path::new("/x/i-0123abcd.json");
        assert_eq!(
            instance_from_path(single, single).as_deref(),
            Some("i-0123abcd")
        );
    }

    #[test]
    fn documents_pages_and_tokens() {
        let docs = json_documents(b"{\"a\": 1}\n{\"a\": 2, \"NextToken\": \"x\"}", "f").unwrap();
        assert_eq!(docs.len(), 2);
        let truncation_warning = |doc: &serde_json::Value, origin: &str| {
            json::typed_documents::<json::Tokens>(doc.to_string().as_bytes(), origin)
                .unwrap()
                .remove(0)
                .warning(origin)
        };
        assert!(truncation_warning(&docs[0], "f").is_none());
        let w = truncation_warning(&docs[1], "f").unwrap();
        assert!(
            w.starts_with("f: ") && w.contains("without --no-paginate"),
            "{w}"
        );
        // The CLI's own token, as `--max-items 2` leaves it.
        let cli = serde_json::json!({"NextToken": "eyJOZXh0VG9rZW4iOiBudWxsLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAyfQ=="});
        let w = truncation_warning(&cli, "f").unwrap();
        assert!(w.contains("without --max-items"), "{w}");
        let logs = serde_json::json!({"events": [], "nextToken": "abc"});
        assert!(truncation_warning(&logs, "g")
            .unwrap()
            .contains("`nextToken`"));
        let done = serde_json::json!({"events": [], "nextToken": null});
        assert!(truncation_warning(&done, "g").is_none());
        let e = json_documents(b" \n", "empty.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("empty.json: empty file"), "{e}");
        let e = json_documents(b"{\"a\": [1,\n", "cut.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cut.json:2:"), "{e}");
    }
}
