//! Renders `epitaph heap diff` results: a table for the terminal, Markdown for a ticket, JSON
//! for tools. The judgement is `analysis::heap`; this only lays it out.

use crate::analysis::heap::HeapDiff;
use crate::sinks::report::Format;

/// A byte count for people: "1.5 MiB".
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn counts(c: &[usize]) -> String {
    c.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The diff in the requested format (`html` is refused by the caller).
pub fn render(d: &HeapDiff, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(d).expect("a heap diff serialises") + "\n",
        Format::Markdown => markdown(d),
        _ => table(d),
    }
}

fn header(d: &HeapDiff) -> String {
    let sizes: Vec<String> = d
        .snapshots
        .iter()
        .map(|s| format!("{} nodes, {}", s.nodes, fmt_bytes(s.self_bytes)))
        .collect();
    format!("heap diff ({}): {}\n", d.method, sizes.join(" | "))
}

fn table(d: &HeapDiff) -> String {
    let mut out = header(d);
    if d.suspects.is_empty() {
        out.push_str(&format!(
            "no leak suspect: no constructor has ≥ {} objects allocated after the baseline, still alive and retaining ≥ {} ({} constructors grew less)\n",
            crate::analysis::heap::MIN_SURVIVORS,
            fmt_bytes(crate::analysis::heap::MIN_RETAINED_BYTES),
            d.below_threshold
        ));
        return out;
    }
    out.push_str(&format!(
        "{:<4} {:<32} {:<12} {:>10} {:>12} {:<24}\n",
        "#", "constructor", "origin", "surviving", "retained", "count per snapshot"
    ));
    for (i, s) in d.suspects.iter().enumerate() {
        out.push_str(&format!(
            "{:<4} {:<32} {:<12} {:>10} {:>12} {:<24}\n",
            i + 1,
            s.class,
            s.origin,
            s.surviving,
            fmt_bytes(s.retained_bytes),
            counts(&s.counts)
        ));
        out.push_str(&format!("     held by: {}\n", s.retainer_path.join(" → ")));
    }
    out
}

fn markdown(d: &HeapDiff) -> String {
    let mut out = format!("### {}", header(d));
    if d.suspects.is_empty() {
        out.push_str("\nNo leak suspect.\n");
        return out;
    }
    out.push_str("\n| # | constructor | origin | surviving | retained | count per snapshot | held by |\n|---|---|---|---|---|---|---|\n");
    for (i, s) in d.suspects.iter().enumerate() {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} | {} |\n",
            i + 1,
            s.class.replace('|', "\\|"),
            s.origin,
            s.surviving,
            fmt_bytes(s.retained_bytes),
            counts(&s.counts),
            s.retainer_path.join(" → ").replace('|', "\\|")
        ));
    }
    out
}
