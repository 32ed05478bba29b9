//! V8 heap-snapshot analysis behind `epitaph heap diff`: pure, no I/O (the streaming reader
//! is `sources::heapsnapshot`).
//!
//! The method is memlab's: a *baseline* snapshot before the suspect action, a *target*
//! snapshot after it, and optionally a *final* snapshot after more of it (or after undoing
//! it). V8 keeps a heap object's id across the snapshots of one process, so the objects
//! allocated between baseline and target that are still alive in the last snapshot are the
//! leak candidates. They are grouped by constructor; a group is a suspect when enough of its
//! objects survive and they retain enough memory. Retained sizes come from the dominator tree
//! of the last snapshot (weak edges ignored), and each suspect gets the shortest retainer path
//! from the GC root to its largest survivor — the chain a developer has to cut.
//!
//! Application constructors rank before JavaScript's and Node's built-ins (a leak of
//! `RequestRecord` objects held in a `Map` shows `RequestRecord` first and the `Map` in its
//! retainer path).
//!
//! Length: one algorithm — the snapshot graph, dominators, retained sizes, survivor grouping
//! and retainer paths share the graph's representation; about 130 lines are its unit tests.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A constructor is a suspect only when at least this many of its objects were allocated
/// between the first two snapshots and are still alive in the last one.
pub const MIN_SURVIVORS: usize = 50;
/// …and when those survivors retain at least this many bytes.
pub const MIN_RETAINED_BYTES: u64 = 64 * 1024;
/// Suspects listed by default.
pub const DEFAULT_TOP: usize = 10;
/// Retainer paths longer than this are cut in the middle.
pub const MAX_PATH_STEPS: usize = 24;
/// Synthetic nodes a retainer path may pass before any other: the root, the GC roots'
/// parent, and the categories that hold what programs hold (stack, global and traced handles).
/// Paths through V8's other root categories are taken only for what these cannot reach.
const USER_ROOTS: &[&str] = &[
    "",
    "(GC roots)",
    "(Stack roots)",
    "(Global handles)",
    "(Eternal handles)",
    "(Traced handles)",
];

/// Built-in constructors: ranked after the application's own (they are usually where a leak
/// is held, not what leaks). V8's internal objects (`system / Context`, `(closure)`, …) too.
const BUILTIN_CLASSES: &[&str] = &[
    "Object",
    "Array",
    "Map",
    "Set",
    "WeakMap",
    "WeakSet",
    "WeakRef",
    "Promise",
    "Function",
    "Error",
    "TypeError",
    "RangeError",
    "RegExp",
    "Date",
    "ArrayBuffer",
    "SharedArrayBuffer",
    "DataView",
    "Uint8Array",
    "Int8Array",
    "Uint16Array",
    "Int16Array",
    "Uint32Array",
    "Int32Array",
    "Float32Array",
    "Float64Array",
    "BigInt64Array",
    "BigUint64Array",
    "Buffer",
    "FastBuffer",
    "Arguments",
    "Generator",
    "AsyncGenerator",
    "Symbol",
    "Number",
    "String",
    "Boolean",
    "global",
    "Window",
    "EventEmitter",
    "Timeout",
    "Immediate",
    "TickObject",
];

/// The `snapshot.meta` object of a `.heapsnapshot` file: which fields a node and an edge
/// have, in which order, and the names of their types.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotMeta {
    pub node_fields: Vec<String>,
    /// The first element lists the node type names; the others describe the other fields.
    pub node_types: Vec<serde_json::Value>,
    pub edge_fields: Vec<String>,
    pub edge_types: Vec<serde_json::Value>,
}

/// One snapshot as V8 writes it: flat integer arrays indexed through the meta.
#[derive(Debug, Clone)]
pub struct HeapSnapshot {
    node_stride: usize,
    n_type: usize,
    n_name: usize,
    n_id: usize,
    n_self_size: usize,
    n_edge_count: usize,
    node_types: Vec<String>,
    edge_stride: usize,
    e_type: usize,
    e_name: usize,
    e_to: usize,
    edge_types: Vec<String>,
    nodes: Vec<u32>,
    edges: Vec<u32>,
    strings: Vec<String>,
    /// Index of each node's first edge (in edges, not array slots); one more than nodes.
    first_edge: Vec<usize>,
    /// Index of the `weak` edge type, if the meta names one.
    weak_type: Option<u32>,
}

fn field(fields: &[String], name: &str) -> Result<usize, String> {
    fields
        .iter()
        .position(|f| f == name)
        .ok_or_else(|| format!("snapshot.meta: no `{name}` field in {fields:?}"))
}

fn type_names(types: &[serde_json::Value], what: &str) -> Result<Vec<String>, String> {
    types
        .first()
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .ok_or_else(|| format!("snapshot.meta.{what}[0]: not a list of type names"))
}

impl HeapSnapshot {
    /// Checks the arrays against the meta: every edge points at a node, every name at a string.
    pub fn new(
        meta: &SnapshotMeta,
        nodes: Vec<u32>,
        edges: Vec<u32>,
        strings: Vec<String>,
    ) -> Result<Self, String> {
        let node_stride = meta.node_fields.len();
        let edge_stride = meta.edge_fields.len();
        if node_stride == 0 || edge_stride == 0 {
            return Err("snapshot.meta: empty node_fields or edge_fields".into());
        }
        if !nodes.len().is_multiple_of(node_stride) {
            return Err(format!(
                "nodes: {} numbers is not a multiple of {node_stride} fields",
                nodes.len()
            ));
        }
        if !edges.len().is_multiple_of(edge_stride) {
            return Err(format!(
                "edges: {} numbers is not a multiple of {edge_stride} fields",
                edges.len()
            ));
        }
        let node_types = type_names(&meta.node_types, "node_types")?;
        let edge_types = type_names(&meta.edge_types, "edge_types")?;
        let mut s = HeapSnapshot {
            node_stride,
            n_type: field(&meta.node_fields, "type")?,
            n_name: field(&meta.node_fields, "name")?,
            n_id: field(&meta.node_fields, "id")?,
            n_self_size: field(&meta.node_fields, "self_size")?,
            n_edge_count: field(&meta.node_fields, "edge_count")?,
            weak_type: edge_types
                .iter()
                .position(|t| t == "weak")
                .map(|i| i as u32),
            node_types,
            edge_stride,
            e_type: field(&meta.edge_fields, "type")?,
            e_name: field(&meta.edge_fields, "name_or_index")?,
            e_to: field(&meta.edge_fields, "to_node")?,
            edge_types,
            nodes,
            edges,
            strings,
            first_edge: Vec::new(),
        };
        let n = s.node_count();
        let mut first_edge = Vec::with_capacity(n + 1);
        let mut at = 0usize;
        for i in 0..n {
            first_edge.push(at);
            at += s.nodes[i * node_stride + s.n_edge_count] as usize;
        }
        first_edge.push(at);
        if at * edge_stride != s.edges.len() {
            return Err(format!(
                "the nodes' edge counts add up to {at} edges, the edges array holds {}",
                s.edges.len() / edge_stride
            ));
        }
        s.first_edge = first_edge;
        for i in 0..n {
            let name = s.nodes[i * node_stride + s.n_name] as usize;
            if name >= s.strings.len() {
                return Err(format!("node {i}: name index {name} is past the strings"));
            }
            let t = s.nodes[i * node_stride + s.n_type] as usize;
            if t >= s.node_types.len() {
                return Err(format!("node {i}: type {t} is not in snapshot.meta"));
            }
        }
        for e in 0..at {
            let to = s.edges[e * edge_stride + s.e_to] as usize;
            if !to.is_multiple_of(node_stride) || to / node_stride >= n {
                return Err(format!("edge {e}: to_node {to} is not a node"));
            }
        }
        Ok(s)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len() / self.node_stride
    }

    fn nf(&self, i: usize, f: usize) -> u32 {
        self.nodes[i * self.node_stride + f]
    }

    pub fn id(&self, i: usize) -> u32 {
        self.nf(i, self.n_id)
    }

    pub fn self_size(&self, i: usize) -> u64 {
        u64::from(self.nf(i, self.n_self_size))
    }

    pub fn node_type(&self, i: usize) -> &str {
        &self.node_types[self.nf(i, self.n_type) as usize]
    }

    fn raw_name(&self, i: usize) -> &str {
        &self.strings[self.nf(i, self.n_name) as usize]
    }

    /// The class a node is grouped under, as Chrome DevTools names them: the constructor for
    /// objects, `(string)`, `(array)`, `(closure)`, `(compiled code)`, `(system)`, ….
    pub fn class_name(&self, i: usize) -> String {
        match self.node_type(i) {
            "object" | "native" => {
                let name = self.raw_name(i);
                // Global objects carry a URL after the class: "Window / https://…".
                match name.split_once(" / ") {
                    Some((class, rest)) if rest.contains("://") => class.to_string(),
                    _ => name.to_string(),
                }
            }
            "closure" => "(closure)".into(),
            "string" | "concatenated string" | "sliced string" => "(string)".into(),
            "array" => "(array)".into(),
            "code" => "(compiled code)".into(),
            "hidden" => "(system)".into(),
            "regexp" => "RegExp".into(),
            "number" | "heap number" => "(number)".into(),
            "synthetic" if self.raw_name(i).is_empty() => "(root)".into(),
            "synthetic" => self.raw_name(i).to_string(),
            other => format!("({other})"),
        }
    }

    /// Objects, closures and native objects: what a suspect can be (strings, arrays and
    /// code are what suspects retain).
    fn is_candidate_type(&self, i: usize) -> bool {
        matches!(self.node_type(i), "object" | "closure" | "native")
    }

    fn edges_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.first_edge[i]..self.first_edge[i + 1]
    }

    fn edge_to(&self, e: usize) -> usize {
        self.edges[e * self.edge_stride + self.e_to] as usize / self.node_stride
    }

    fn edge_is_weak(&self, e: usize) -> bool {
        Some(self.edges[e * self.edge_stride + self.e_type]) == self.weak_type
    }

    fn edge_label(&self, e: usize) -> String {
        let t = self.edges[e * self.edge_stride + self.e_type] as usize;
        let v = self.edges[e * self.edge_stride + self.e_name] as usize;
        match self.edge_types.get(t).map(String::as_str) {
            Some("element" | "hidden") => format!("[{v}]"),
            _ => match self.strings.get(v) {
                Some(name) => format!(".{name}"),
                None => format!("[{v}]"),
            },
        }
    }

    /// Retained size of every node: its own size plus everything only reachable through it
    /// (dominator tree from node 0, the synthetic root; weak edges ignored; Cooper, Harvey
    /// and Kennedy's iterative algorithm). Unreachable nodes retain nothing.
    pub fn retained_sizes(&self) -> Vec<u64> {
        let n = self.node_count();
        if n == 0 {
            return Vec::new();
        }
        const UNSEEN: usize = usize::MAX;
        // Post-order numbering by an iterative depth-first search.
        let mut post_of = vec![UNSEEN; n];
        let mut order: Vec<usize> = Vec::with_capacity(n); // post-order → node
        let mut visited = vec![false; n];
        let mut stack: Vec<(usize, usize)> = vec![(0, self.first_edge[0])];
        visited[0] = true;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if *next < self.first_edge[node + 1] {
                let e = *next;
                *next += 1;
                if self.edge_is_weak(e) {
                    continue;
                }
                let to = self.edge_to(e);
                if !visited[to] {
                    visited[to] = true;
                    stack.push((to, self.first_edge[to]));
                }
            } else {
                post_of[node] = order.len();
                order.push(node);
                stack.pop();
            }
        }
        let reached = order.len();
        // Predecessors (as post-order numbers) of each reached node, CSR.
        let mut pred_count = vec![0usize; reached + 1];
        for &node in &order {
            for e in self.edges_of(node) {
                if !self.edge_is_weak(e) {
                    pred_count[post_of[self.edge_to(e)]] += 1;
                }
            }
        }
        let mut pred_start = vec![0usize; reached + 1];
        for p in 0..reached {
            pred_start[p + 1] = pred_start[p] + pred_count[p];
        }
        let mut fill = pred_start.clone();
        let mut preds = vec![0usize; pred_start[reached]];
        for &node in &order {
            let from = post_of[node];
            for e in self.edges_of(node) {
                if !self.edge_is_weak(e) {
                    let to = post_of[self.edge_to(e)];
                    preds[fill[to]] = from;
                    fill[to] += 1;
                }
            }
        }
        let root = reached - 1; // the root finishes last
        let mut idom = vec![UNSEEN; reached];
        idom[root] = root;
        let intersect = |idom: &[usize], mut a: usize, mut b: usize| {
            while a != b {
                while a < b {
                    a = idom[a];
                }
                while b < a {
                    b = idom[b];
                }
            }
            a
        };
        let mut changed = true;
        while changed {
            changed = false;
            for v in (0..root).rev() {
                let mut new_idom = UNSEEN;
                for &p in &preds[pred_start[v]..pred_start[v + 1]] {
                    if idom[p] == UNSEEN {
                        continue;
                    }
                    new_idom = if new_idom == UNSEEN {
                        p
                    } else {
                        intersect(&idom, p, new_idom)
                    };
                }
                if new_idom != UNSEEN && idom[v] != new_idom {
                    idom[v] = new_idom;
                    changed = true;
                }
            }
        }
        let mut retained = vec![0u64; n];
        let mut by_post = vec![0u64; reached];
        for (p, &node) in order.iter().enumerate() {
            by_post[p] = self.self_size(node);
        }
        // Children finish before their dominator in post-order.
        for v in 0..root {
            if idom[v] != UNSEEN {
                by_post[idom[v]] += by_post[v];
            }
        }
        for (p, &node) in order.iter().enumerate() {
            retained[node] = by_post[p];
        }
        retained
    }

    /// For every node, the edge it is reached by on a shortest chain of strong edges from the
    /// root — preferring chains that cross none of V8's internal root categories (handle
    /// scopes and strong roots its own code holds while the snapshot is written, caches):
    /// the chain a developer can cut, from the stack, a global or a handle, through their own
    /// objects. One breadth-first pass that does not enter internal root categories, then a
    /// second that continues from them for whatever the first could not reach.
    pub fn retainer_tree(&self) -> RetainerTree {
        let n = self.node_count();
        let mut parent: Vec<Option<(u32, u32)>> = vec![None; n];
        let mut seen = vec![false; n];
        let mut deferred = Vec::new();
        let mut queue = std::collections::VecDeque::from([0usize]);
        seen[0] = true;
        for pass in 0..2 {
            if pass == 1 {
                queue.extend(deferred.drain(..));
            }
            while let Some(node) = queue.pop_front() {
                let internal = self.node_type(node) == "synthetic"
                    && !USER_ROOTS.contains(&self.raw_name(node));
                if internal && pass == 0 {
                    deferred.push(node);
                    continue;
                }
                for e in self.edges_of(node) {
                    if self.edge_is_weak(e) {
                        continue;
                    }
                    let to = self.edge_to(e);
                    if !seen[to] {
                        seen[to] = true;
                        parent[to] = Some((node as u32, e as u32));
                        queue.push_back(to);
                    }
                }
            }
        }
        RetainerTree { parent }
    }

    /// The chain from the root to `target` in `tree`, as `Class.edge` steps.
    pub fn retainer_path(&self, tree: &RetainerTree, target: usize) -> Vec<String> {
        if target != 0 && tree.parent[target].is_none() {
            return vec!["(not reachable from the root through strong edges)".into()];
        }
        let parent = |at: usize| tree.parent[at].map(|(n, e)| (n as usize, e as usize));
        let mut steps = Vec::new();
        let mut at = target;
        while let Some((from, e)) = parent(at) {
            steps.push(format!("{}{}", self.class_name(from), self.edge_label(e)));
            at = from;
        }
        steps.reverse();
        steps.push(self.class_name(target));
        if steps.len() > MAX_PATH_STEPS {
            let tail = steps.split_off(steps.len() - MAX_PATH_STEPS / 2);
            steps.truncate(MAX_PATH_STEPS / 2);
            steps.push("…".into());
            steps.extend(tail);
        }
        steps
    }
}

/// Shortest strong-edge retainers from the root (see [`HeapSnapshot::retainer_tree`]).
pub struct RetainerTree {
    /// (node, edge) each node is reached by; `None` for the root and unreachable nodes.
    parent: Vec<Option<(u32, u32)>>,
}

/// A heap diff attached to a deployment (`epitaph heap diff … --attach DEPLOYMENT`): shown in
/// that deployment's section of the HTML report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachedHeapDiff {
    pub deployment: String,
    pub attached_at: chrono::DateTime<chrono::Utc>,
    /// The snapshot files as given, in order.
    pub files: Vec<String>,
    pub diff: HeapDiff,
}

/// One snapshot's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    pub nodes: usize,
    pub self_bytes: u64,
}

/// A constructor whose objects were allocated after the baseline and stay alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    pub class: String,
    /// `application` or `builtin`.
    pub origin: String,
    /// Objects of this class in each snapshot, in the order given.
    pub counts: Vec<usize>,
    /// Objects allocated between the first two snapshots and alive in the last.
    pub surviving: usize,
    /// What those survivors retain in the last snapshot (a survivor retained by another
    /// survivor of the same class is counted once, through its retainer).
    pub retained_bytes: u64,
    /// Their own size.
    pub self_bytes: u64,
    /// Heap object id of the survivor that retains the most.
    pub example_id: u32,
    /// From the GC root to that survivor.
    pub retainer_path: Vec<String>,
}

/// The result of `epitaph heap diff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapDiff {
    /// `baseline→target` (two snapshots) or `baseline→target→final` (three).
    pub method: String,
    pub snapshots: Vec<SnapshotSummary>,
    /// Ranked: application constructors first, then by retained bytes.
    pub suspects: Vec<Suspect>,
    /// Constructors with survivors below the thresholds (count, retained bytes), for the
    /// curious: growth too small to call a leak.
    pub below_threshold: usize,
}

fn class_counts(s: &HeapSnapshot) -> HashMap<String, usize> {
    // Counted by (type, name) first: one class name string per distinct key, not per node.
    let mut by_key: HashMap<(u32, u32), (usize, usize)> = HashMap::new();
    for i in 0..s.node_count() {
        if s.is_candidate_type(i) {
            let key = (s.nf(i, s.n_type), s.nf(i, s.n_name));
            by_key.entry(key).or_insert((i, 0)).1 += 1;
        }
    }
    let mut counts = HashMap::new();
    for (example, n) in by_key.into_values() {
        *counts.entry(s.class_name(example)).or_insert(0) += n;
    }
    counts
}

/// What the diff needs of an earlier snapshot: its object ids, its objects per class and
/// its totals. Earlier snapshots are digested and dropped, so only the last one is held in
/// full (a 200 MB snapshot's arrays, not three of them).
#[derive(Debug, Clone)]
pub struct SnapshotDigest {
    /// Sorted.
    ids: Vec<u32>,
    counts: HashMap<String, usize>,
    summary: SnapshotSummary,
}

impl SnapshotDigest {
    pub fn of(s: &HeapSnapshot) -> Self {
        SnapshotDigest {
            ids: {
                let mut ids: Vec<u32> = (0..s.node_count()).map(|i| s.id(i)).collect();
                ids.sort_unstable();
                ids
            },
            counts: class_counts(s),
            summary: summary(s),
        }
    }
}

fn summary(s: &HeapSnapshot) -> SnapshotSummary {
    SnapshotSummary {
        nodes: s.node_count(),
        self_bytes: (0..s.node_count()).map(|i| s.self_size(i)).sum(),
    }
}

/// Compares two or three snapshots of one process (memlab's baseline / target / final).
pub fn diff(snaps: &[HeapSnapshot], top: usize) -> Result<HeapDiff, String> {
    match snaps {
        [base, last] => Ok(diff_digested(&[SnapshotDigest::of(base)], last, top)),
        [base, target, last] => Ok(diff_digested(
            &[SnapshotDigest::of(base), SnapshotDigest::of(target)],
            last,
            top,
        )),
        _ => Err(format!(
            "heap diff takes 2 or 3 snapshots (baseline, target[, final]), not {}",
            snaps.len()
        )),
    }
}

/// The diff from the digests of the earlier snapshots (baseline, or baseline and target)
/// and the last snapshot in full.
pub fn diff_digested(earlier: &[SnapshotDigest], last: &HeapSnapshot, top: usize) -> HeapDiff {
    let base_ids = &earlier[0].ids;
    let in_base = |id: &u32| base_ids.binary_search(id).is_ok();
    // Sorted, as the target's ids are.
    let window_ids: Option<Vec<u32>> = earlier.get(1).map(|target| {
        target
            .ids
            .iter()
            .copied()
            .filter(|id| !in_base(id))
            .collect()
    });
    let retained = last.retained_sizes();
    let is_survivor = |i: usize| {
        let id = last.id(i);
        last.is_candidate_type(i)
            && match &window_ids {
                Some(w) => w.binary_search(&id).is_ok(),
                None => !in_base(&id),
            }
    };
    let survivors: Vec<usize> = (0..last.node_count()).filter(|&i| is_survivor(i)).collect();
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for &i in &survivors {
        groups.entry(last.class_name(i)).or_default().push(i);
    }
    let last_counts = class_counts(last);
    let counts: Vec<&HashMap<String, usize>> = earlier
        .iter()
        .map(|d| &d.counts)
        .chain(std::iter::once(&last_counts))
        .collect();
    let mut suspects = Vec::new();
    let mut below_threshold = 0;
    for (class, members) in groups {
        // Count each survivor's retained size once: skip survivors dominated by another
        // survivor of the same class (a linked list of leaked nodes).
        let retained_bytes = retained_once(last, &members, &retained);
        let self_bytes: u64 = members.iter().map(|&i| last.self_size(i)).sum();
        let per_snapshot: Vec<usize> = counts
            .iter()
            .map(|c| c.get(&class).copied().unwrap_or(0))
            .collect();
        let grew = per_snapshot.last().copied().unwrap_or(0)
            >= per_snapshot[0].saturating_add(MIN_SURVIVORS);
        if members.len() < MIN_SURVIVORS || retained_bytes < MIN_RETAINED_BYTES || !grew {
            below_threshold += 1;
            continue;
        }
        let example = *members
            .iter()
            .max_by_key(|&&i| (retained[i], std::cmp::Reverse(last.id(i))))
            .expect("a group has members");
        suspects.push((
            Suspect {
                origin: if BUILTIN_CLASSES.contains(&class.as_str())
                    || class.starts_with('(')
                    || class.starts_with("system /")
                {
                    "builtin"
                } else {
                    "application"
                }
                .to_string(),
                class,
                counts: per_snapshot,
                surviving: members.len(),
                retained_bytes,
                self_bytes,
                example_id: last.id(example),
                retainer_path: Vec::new(),
            },
            example,
        ));
    }
    suspects.sort_by(|(a, _), (b, _)| {
        (a.origin != "application")
            .cmp(&(b.origin != "application"))
            .then(b.retained_bytes.cmp(&a.retained_bytes))
            .then(a.class.cmp(&b.class))
    });
    suspects.truncate(top);
    if !suspects.is_empty() {
        let tree = last.retainer_tree();
        for (s, example) in &mut suspects {
            s.retainer_path = last.retainer_path(&tree, *example);
        }
    }
    let suspects: Vec<Suspect> = suspects.into_iter().map(|(s, _)| s).collect();
    HeapDiff {
        method: if earlier.len() == 2 {
            "baseline→target→final"
        } else {
            "baseline→target"
        }
        .to_string(),
        snapshots: earlier
            .iter()
            .map(|d| d.summary.clone())
            .chain(std::iter::once(summary(last)))
            .collect(),
        suspects,
        below_threshold,
    }
}

/// Sum of the members' retained sizes, each member counted once: a member another member
/// points at (a chain or tree of leaked objects of one class) is already inside that
/// member's retained size and is left out.
fn retained_once(s: &HeapSnapshot, members: &[usize], retained: &[u64]) -> u64 {
    let set: HashSet<usize> = members.iter().copied().collect();
    let mut pointed = HashSet::new();
    for &m in members {
        for e in s.edges_of(m) {
            if s.edge_is_weak(e) {
                continue;
            }
            let to = s.edge_to(e);
            if to != m && set.contains(&to) {
                pointed.insert(to);
            }
        }
    }
    members
        .iter()
        .filter(|m| !pointed.contains(m))
        .map(|&m| retained[m])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        serde_json::from_str(
            r#"{"node_fields":["type","name","id","self_size","edge_count","trace_node_id","detachedness"],
                "node_types":[["hidden","array","string","object","code","closure","regexp","number","native","synthetic"],"string","number","number","number","number","number"],
                "edge_fields":["type","name_or_index","to_node"],
                "edge_types":[["context","element","property","internal","hidden","shortcut","weak"],"string_or_number","node"]}"#,
        )
        .unwrap()
    }

    const SYNTHETIC: u32 = 9;
    const OBJECT: u32 = 3;
    const STRING: u32 = 2;
    const PROPERTY: u32 = 2;
    const ELEMENT: u32 = 1;
    const WEAK: u32 = 6;

    /// A tiny heap: root → Holder(map) → N Leaky objects, each holding a string; one
    /// `Other` reachable only through a weak edge.
    fn heap(leaky_ids: &[u32], strings_size: u32) -> HeapSnapshot {
        let strings: Vec<String> = [
            "", "(root)", "Holder", "Leaky", "payload", "items", "Other", "s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let n_leaky = leaky_ids.len() as u32;
        let stride = 7u32;
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        // node 0: root, 2 edges (Holder, weak Other)
        nodes.extend([SYNTHETIC, 1, 1, 0, 2, 0, 0]);
        edges.extend([PROPERTY, 5, stride]); // .items → Holder (node 1)
        let other = 2 + 2 * n_leaky;
        edges.extend([WEAK, 0, other * stride]);
        // node 1: Holder with n_leaky elements
        nodes.extend([OBJECT, 2, 3, 32, n_leaky, 0, 0]);
        for k in 0..n_leaky {
            edges.extend([ELEMENT, k, (2 + 2 * k) * stride]);
        }
        for (k, &id) in leaky_ids.iter().enumerate() {
            let k = k as u32;
            // Leaky object → its string
            nodes.extend([OBJECT, 3, id, 24, 1, 0, 0]);
            edges.extend([PROPERTY, 4, (3 + 2 * k) * stride]);
            nodes.extend([STRING, 7, id + 1, strings_size, 0, 0, 0]);
        }
        nodes.extend([OBJECT, 6, 99_999, 1000, 0, 0, 0]);
        HeapSnapshot::new(&meta(), nodes, edges, strings).unwrap()
    }

    #[test]
    fn retained_sizes_follow_the_dominator_tree_and_ignore_weak_edges() {
        let h = heap(&[101, 103], 100);
        let r = h.retained_sizes();
        // Leaky = 24 + its string 100.
        assert_eq!(r[2], 124);
        assert_eq!(r[4], 124);
        // Holder = 32 + 2 × 124; Other is only weakly reachable: retained by nobody.
        assert_eq!(r[1], 32 + 248);
        assert_eq!(r[0], 32 + 248);
        assert_eq!(r[6], 0);
    }

    #[test]
    fn survivors_allocated_after_the_baseline_are_the_suspects() {
        let base = heap(&[101, 103], 2000);
        let ids: Vec<u32> = (0..200).map(|k| 101 + 2 * k).collect();
        let target = heap(&ids, 2000);
        let d = diff(&[base, target], 10).unwrap();
        assert_eq!(d.suspects.len(), 1, "{d:?}");
        let s = &d.suspects[0];
        assert_eq!(s.class, "Leaky");
        assert_eq!(s.origin, "application");
        assert_eq!(s.counts, vec![2, 200]);
        assert_eq!(s.surviving, 198);
        assert_eq!(s.retained_bytes, 198 * 2024);
        // The example is the largest survivor; ties go to the oldest (lowest id: k = 2).
        assert_eq!(s.retainer_path, vec!["(root).items", "Holder[2]", "Leaky"]);
    }

    #[test]
    fn three_snapshots_count_only_objects_of_the_window_still_alive() {
        let base: Vec<u32> = (0..10).map(|k| 101 + 2 * k).collect();
        let target: Vec<u32> = (0..210).map(|k| 101 + 2 * k).collect();
        // Final: the window's objects all freed, new ones allocated after target.
        let mut fin: Vec<u32> = base.clone();
        fin.extend((0..300).map(|k| 10_001 + 2 * k));
        let d = diff(
            &[heap(&base, 2000), heap(&target, 2000), heap(&fin, 2000)],
            10,
        )
        .unwrap();
        assert!(d.suspects.is_empty(), "{d:?}");
        // The window's objects kept: a leak.
        let d = diff(
            &[heap(&base, 2000), heap(&target, 2000), heap(&target, 2000)],
            10,
        )
        .unwrap();
        assert_eq!(d.suspects[0].surviving, 200);
    }

    #[test]
    fn small_growth_is_below_the_thresholds() {
        let ids: Vec<u32> = (0..(MIN_SURVIVORS as u32 - 1))
            .map(|k| 101 + 2 * k)
            .collect();
        let d = diff(&[heap(&[], 5000), heap(&ids, 5000)], 10).unwrap();
        assert!(d.suspects.is_empty());
        assert_eq!(d.below_threshold, 1);
    }

    #[test]
    fn inconsistent_arrays_are_refused() {
        let h = heap(&[101], 10);
        let mut nodes = h.nodes.clone();
        nodes[4] = 7; // root claims 7 edges
        assert!(
            HeapSnapshot::new(&meta(), nodes, h.edges.clone(), h.strings.clone())
                .unwrap_err()
                .contains("edge counts add up")
        );
        let mut edges = h.edges.clone();
        edges[2] = 3; // not a multiple of the node stride
        assert!(
            HeapSnapshot::new(&meta(), h.nodes.clone(), edges, h.strings.clone())
                .unwrap_err()
                .contains("is not a node")
        );
    }
}
