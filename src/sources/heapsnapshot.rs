//! Reads a V8 heap snapshot (`.heapsnapshot`: `node --heapsnapshot-near-heap-limit`,
//! `v8.writeHeapSnapshot()`, Chrome DevTools) into `analysis::heap::HeapSnapshot`, streaming:
//! the file is never held as text nor as a JSON tree. The `snapshot` header comes first in
//! every file V8 writes, so the node and edge arrays are allocated once at their final size
//! (`node_count × fields`); sections the analysis does not use (trace trees, samples,
//! locations) are skipped as they stream past.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// A JSON array of unsigned 32-bit integers read into a vector of a known size.
struct U32Array(usize);

impl<'de> DeserializeSeed<'de> for U32Array {
    type Value = Vec<u32>;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Vec<u32>, D::Error> {
        struct V(usize);
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u32>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of unsigned 32-bit integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Vec<u32>, A::Error> {
                let mut out = Vec::with_capacity(self.0);
                while let Some(v) = seq.next_element::<u32>()? {
                    out.push(v);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(self.0))
    }
}

struct Parts {
    header: Option<Header>,
    nodes: Option<Vec<u32>>,
    edges: Option<Vec<u32>>,
    strings: Option<Vec<String>>,
}

struct SnapshotVisitor;

impl<'de> Visitor<'de> for SnapshotVisitor {
    type Value = Parts;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a V8 heap snapshot object (snapshot, nodes, edges, strings)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Parts, A::Error> {
        let mut parts = Parts {
            header: None,
            nodes: None,
            edges: None,
            strings: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "snapshot" => parts.header = Some(map.next_value()?),
                "nodes" => {
                    let hint = parts
                        .header
                        .as_ref()
                        .map_or(0, |h| h.node_count * h.meta.node_fields.len());
                    parts.nodes = Some(map.next_value_seed(U32Array(hint))?);
                }
                "edges" => {
                    let hint = parts
                        .header
                        .as_ref()
                        .map_or(0, |h| h.edge_count * h.meta.edge_fields.len());
                    parts.edges = Some(map.next_value_seed(U32Array(hint))?);
                }
                "strings" => parts.strings = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// Reads one snapshot; errors name the file (and the JSON line and column when the text is
/// not a snapshot).
pub fn read(path: &Path) -> Result<HeapSnapshot> {
    let at = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::input(&at, format!("cannot open: {e}")))?;
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parts = serde::Deserializer::deserialize_map(&mut de, SnapshotVisitor).map_err(|e| {
        Error::input(
            format!("{at}:{}:{}", e.line(), e.column()),
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
"strings":["","(root)","Thing"]}}"#
        );
        let f = write(&text);
        let s = read(f.path()).unwrap();
        assert_eq!(s.node_count(), 2);
        assert_eq!(s.class_name(1), "Thing");
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
