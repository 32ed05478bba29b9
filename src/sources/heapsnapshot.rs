//! Reads a V8 heap snapshot (`.heapsnapshot`: `node --heapsnapshot-near-heap-limit`,
//! `v8.writeHeapSnapshot()`, Chrome DevTools) into `analysis::heap::HeapSnapshot`, streaming:
//! the file is never held as text nor as a JSON tree. The `snapshot` header comes first in
//! every file V8 writes, so the node and edge arrays are allocated once at their final size
//! (`node_count × fields`); sections the analysis does not use (trace trees, samples,
//! locations) are skipped as they stream past. The file is read by a small scanner made for
//! this shape (an object of a header, long integer arrays and a string array) rather than a
//! general JSON parser: the integer arrays are most of the bytes, and a general parser spends
//! most of its time there. The header and each escaped string go through serde_json.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Deserialize;

use crate::analysis::heap::{HeapSnapshot, SnapshotMeta};
use crate::error::{Error, Result};

/// Read buffer: snapshots run to hundreds of MB.
const READ_BUFFER_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
struct Header {
    meta: SnapshotMeta,
    node_count: usize,
    edge_count: usize,
}

/// A byte scanner over a buffered reader that knows its line (for error messages).
struct Scanner<R: BufRead> {
    r: R,
    line: usize,
}

type Scan<T> = std::result::Result<T, String>;

impl<R: BufRead> Scanner<R> {
    fn peek(&mut self) -> Scan<Option<u8>> {
        let buf = self.r.fill_buf().map_err(|e| format!("read error: {e}"))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) -> Scan<Option<u8>> {
        let b = self.peek()?;
        if let Some(b) = b {
            if b == b'\n' {
                self.line += 1;
            }
            self.r.consume(1);
        }
        Ok(b)
    }

    fn skip_ws(&mut self) -> Scan<()> {
        while let Some(b) = self.peek()? {
            if !b.is_ascii_whitespace() {
                break;
            }
            self.bump()?;
        }
        Ok(())
    }

    fn expect(&mut self, want: u8) -> Scan<()> {
        self.skip_ws()?;
        match self.bump()? {
            Some(b) if b == want => Ok(()),
            Some(b) => Err(format!(
                "expected `{}`, found `{}`",
                want as char,
                (b as char).escape_default()
            )),
            None => Err(format!(
                "expected `{}`, found the end of the file",
                want as char
            )),
        }
    }

    /// The raw bytes of one JSON string, quotes included (escapes left as they are); true
    /// when it holds an escape.
    fn raw_string(&mut self, out: &mut Vec<u8>) -> Scan<bool> {
        self.expect(b'"')?;
        out.push(b'"');
        let mut escaped = false;
        loop {
            let buf = self.r.fill_buf().map_err(|e| format!("read error: {e}"))?;
            if buf.is_empty() {
                return Err("unterminated string".into());
            }
            let mut i = 0;
            let mut end = None;
            while i < buf.len() {
                match buf[i] {
                    b'\\' => {
                        escaped = true;
                        if i + 1 < buf.len() {
                            i += 2;
                            continue;
                        }
                        break; // the escaped character is in the next buffer
                    }
                    b'"' => {
                        end = Some(i);
                        break;
                    }
                    b'\n' => self.line += 1,
                    _ => {}
                }
                i += 1;
            }
            if let Some(e) = end {
                out.extend_from_slice(&buf[..=e]);
                self.r.consume(e + 1);
                return Ok(escaped);
            }
            let straddles = i < buf.len();
            out.extend_from_slice(&buf[..i]);
            self.r.consume(i);
            if straddles {
                // The backslash, then the character it escapes.
                out.push(self.bump()?.ok_or("unterminated string")?);
                out.push(self.bump()?.ok_or("unterminated string")?);
            }
        }
    }

    fn string(&mut self) -> Scan<String> {
        let mut raw = Vec::new();
        let escaped = self.raw_string(&mut raw)?;
        if escaped {
            serde_json::from_slice(&raw).map_err(|e| format!("bad string: {e}"))
        } else {
            String::from_utf8(raw[1..raw.len() - 1].to_vec())
                .map_err(|e| format!("bad string: {e}"))
        }
    }

    /// One JSON value of any kind, copied (for the header) or dropped.
    fn value(&mut self, keep: Option<&mut Vec<u8>>) -> Scan<()> {
        let keeping = keep.is_some();
        let mut sink = Vec::new();
        let out = keep.unwrap_or(&mut sink);
        let mut depth = 0usize;
        loop {
            self.skip_ws()?;
            match self.peek()? {
                None => return Err("unexpected end of the file".into()),
                Some(b'"') => {
                    self.raw_string(out)?;
                }
                Some(b @ (b'{' | b'[')) => {
                    out.push(b);
                    self.bump()?;
                    depth += 1;
                    continue;
                }
                Some(b @ (b'}' | b']')) => {
                    if depth == 0 {
                        return Err(format!("unexpected `{}`", b as char));
                    }
                    out.push(b);
                    self.bump()?;
                    depth -= 1;
                }
                Some(b @ (b',' | b':')) => {
                    out.push(b);
                    self.bump()?;
                    continue;
                }
                Some(_) => {
                    // A number or a literal.
                    while let Some(b) = self.peek()? {
                        if matches!(b, b',' | b'}' | b']' | b':') || b.is_ascii_whitespace() {
                            break;
                        }
                        out.push(b);
                        self.bump()?;
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
            // What is skipped need not be kept.
            if !keeping && out.len() > (1 << 16) {
                out.clear();
            }
        }
    }

    /// A JSON array of unsigned 32-bit integers, read straight from the buffer.
    fn u32_array(&mut self, capacity: usize) -> Scan<Vec<u32>> {
        self.expect(b'[')?;
        let mut out = Vec::with_capacity(capacity);
        let mut cur: u64 = 0;
        let mut in_number = false;
        loop {
            let buf = self.r.fill_buf().map_err(|e| format!("read error: {e}"))?;
            if buf.is_empty() {
                return Err("unterminated array of numbers".into());
            }
            let mut consumed = 0;
            for &b in buf {
                consumed += 1;
                match b {
                    b'0'..=b'9' => {
                        cur = cur * 10 + u64::from(b - b'0');
                        if cur > u64::from(u32::MAX) {
                            return Err(format!("number {cur}… does not fit 32 bits"));
                        }
                        in_number = true;
                    }
                    b',' | b']' | b' ' | b'\n' | b'\r' | b'\t' => {
                        if b == b'\n' {
                            self.line += 1;
                        }
                        if in_number {
                            out.push(cur as u32);
                            cur = 0;
                            in_number = false;
                        }
                        if b == b']' {
                            self.r.consume(consumed);
                            return Ok(out);
                        }
                    }
                    other => {
                        return Err(format!(
                            "`{}` in an array of unsigned integers",
                            (other as char).escape_default()
                        ))
                    }
                }
            }
            self.r.consume(consumed);
        }
    }

    fn string_array(&mut self) -> Scan<Vec<String>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        self.skip_ws()?;
        if self.peek()? == Some(b']') {
            self.bump()?;
            return Ok(out);
        }
        loop {
            out.push(self.string()?);
            self.skip_ws()?;
            match self.bump()? {
                Some(b',') => continue,
                Some(b']') => return Ok(out),
                _ => return Err("expected `,` or `]` in the strings".into()),
            }
        }
    }
}

struct Parts {
    header: Option<Header>,
    nodes: Option<Vec<u32>>,
    edges: Option<Vec<u32>>,
    strings: Option<Vec<String>>,
}

fn scan<R: BufRead>(sc: &mut Scanner<R>) -> Scan<Parts> {
    let mut parts = Parts {
        header: None,
        nodes: None,
        edges: None,
        strings: None,
    };
    sc.expect(b'{')?;
    sc.skip_ws()?;
    if sc.peek()? == Some(b'}') {
        return Ok(parts);
    }
    loop {
        let key = sc.string()?;
        sc.expect(b':')?;
        sc.skip_ws()?;
        match key.as_str() {
            "snapshot" => {
                let mut raw = Vec::new();
                sc.value(Some(&mut raw))?;
                parts.header =
                    Some(serde_json::from_slice(&raw).map_err(|e| format!("`snapshot`: {e}"))?);
            }
            "nodes" => {
                let hint = parts
                    .header
                    .as_ref()
                    .map_or(0, |h| h.node_count * h.meta.node_fields.len());
                parts.nodes = Some(sc.u32_array(hint).map_err(|e| format!("`nodes`: {e}"))?);
            }
            "edges" => {
                let hint = parts
                    .header
                    .as_ref()
                    .map_or(0, |h| h.edge_count * h.meta.edge_fields.len());
                parts.edges = Some(sc.u32_array(hint).map_err(|e| format!("`edges`: {e}"))?);
            }
            "strings" => {
                parts.strings = Some(sc.string_array().map_err(|e| format!("`strings`: {e}"))?)
            }
            _ => sc.value(None)?,
        }
        sc.skip_ws()?;
        match sc.bump()? {
            Some(b',') => sc.skip_ws()?,
            Some(b'}') => return Ok(parts),
            _ => return Err("expected `,` or `}` between the snapshot's sections".into()),
        }
    }
}

/// Reads one snapshot; errors name the file (and the line where the text stops being a
/// snapshot).
pub fn read(path: &Path) -> Result<HeapSnapshot> {
    let at = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::input(&at, format!("cannot open: {e}")))?;
    let mut sc = Scanner {
        r: BufReader::with_capacity(READ_BUFFER_BYTES, file),
        line: 1,
    };
    let parts = scan(&mut sc).map_err(|e| {
        Error::input(
            format!("{at}:{}", sc.line),
            format!("not a V8 heap snapshot: {e}"),
        )
    })?;
    let missing = |what: &str| Error::input(&at, format!("not a V8 heap snapshot: no `{what}`"));
    let header = parts.header.ok_or_else(|| missing("snapshot"))?;
    let nodes = parts.nodes.ok_or_else(|| missing("nodes"))?;
    let edges = parts.edges.ok_or_else(|| missing("edges"))?;
    let strings = parts.strings.ok_or_else(|| missing("strings"))?;
    let snap =
        HeapSnapshot::new(&header.meta, nodes, edges, strings).map_err(|e| Error::input(&at, e))?;
    if snap.node_count() != header.node_count {
        return Err(Error::input(
            &at,
            format!(
                "snapshot.node_count says {} nodes, the nodes array holds {}",
                header.node_count,
                snap.node_count()
            ),
        ));
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    const META: &str = r#"{"node_fields":["type","name","id","self_size","edge_count","trace_node_id","detachedness"],"node_types":[["hidden","array","string","object","code","closure","regexp","number","native","synthetic"],"string","number","number","number","number","number"],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["context","element","property","internal","hidden","shortcut","weak"],"string_or_number","node"]}"#;

    #[test]
    fn reads_a_snapshot_and_skips_what_it_does_not_use() {
        let text = format!(
            r#"{{"snapshot":{{"meta":{META},"node_count":2,"edge_count":1,"trace_function_count":0}},
"nodes":[9,1,1,0,1,0,0
,3,2,3,40,0,0,0],
"edges":[2,2,7],
"trace_function_infos":[],"trace_tree":[],"samples":[],"locations":[[1,2,3]],
"strings":["","(root)","Th\"i\\ng\u00e9"]}}"#
        );
        let f = write(&text);
        let s = read(f.path()).unwrap();
        assert_eq!(s.node_count(), 2);
        assert_eq!(s.class_name(1), "Th\"i\\ngé");
        assert_eq!(s.retained_sizes()[0], 40);
    }

    #[test]
    fn bad_input_names_the_file_and_what_is_wrong() {
        let f = write(r#"{"snapshot":{"meta":{},"node_count":0}}"#);
        let e = read(f.path()).unwrap_err().to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(e.contains("not a V8 heap snapshot"), "{e}");

        let text = format!(
            r#"{{"snapshot":{{"meta":{META},"node_count":5,"edge_count":0}},"nodes":[9,1,1,0,0,0,0],"edges":[],"strings":["","(root)"]}}"#
        );
        let f = write(&text);
        let e = read(f.path()).unwrap_err().to_string();
        assert!(e.contains("node_count says 5"), "{e}");

        let f = write("[1, 2");
        let e = read(f.path()).unwrap_err().to_string();
        assert!(e.contains(":1:"), "line and column: {e}");
    }
}
