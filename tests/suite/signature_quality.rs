//! Signature regression on the team's own labelled corpus (`tests/corpus/signatures.tsv`: real
//! formats, raw and inside shipper wrappers, more than half hard negatives). It was written
//! alongside the library, so it measures memory, not generalisation (that is
//! `tests/oom_corpus.rs`): it pins the exact signature id of every labelled line, so a change
//! that moves a line to another entry, or loses it, fails here. A detection is an OOM, crash or
//! kill-without-a-cause match; context and shutdown lines are not detections.

use epitaph::analysis::signatures::SignatureLibrary;

const MIN_PRECISION: f64 = 1.0;
const MIN_RECALL: f64 = 1.0;
/// Every correctly detected line must also name the labelled signature.
const MIN_EXACT_ID_SHARE: f64 = 1.0;
const MIN_LINES: usize = 400;

#[test]
fn signature_precision_and_recall_on_the_corpus() {
    let lib = SignatureLibrary::default_library().unwrap();
    let text = include_str!("../corpus/signatures.tsv");
    let (mut lines, mut negatives) = (0usize, 0usize);
    let (mut detections, mut correct, mut positives, mut exact_id) =
        (0usize, 0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    for (n, row) in text.lines().enumerate() {
        if row.starts_with('#') || row.trim().is_empty() {
            continue;
        }
        let (label, line) = row
            .split_once('\t')
            .unwrap_or_else(|| panic!("corpus line {}: no tab", n + 1));
        lines += 1;
        let expected = if label == "-" {
            negatives += 1;
            None
        } else {
            positives += 1;
            let sig = lib
                .get(label)
                .unwrap_or_else(|| panic!("corpus line {}: unknown signature {label}", n + 1));
            Some(sig.spec.kind)
        };
        let got = lib
            .match_line(line)
            .filter(|m| m.signature.spec.kind.is_death());
        if let Some(m) = &got {
            detections += 1;
            if Some(m.signature.spec.kind) == expected {
                correct += 1;
                exact_id += usize::from(m.signature.spec.id == label);
            }
        }
        let got_id = got.as_ref().map(|m| m.signature.spec.id.as_str());
        let ok = match (expected, &got) {
            (None, None) => true,
            (Some(k), Some(m)) => m.signature.spec.kind == k,
            _ => false,
        };
        if !ok {
            misses.push(format!(
                "line {}: expected {label}, got {}: {line}",
                n + 1,
                got_id.unwrap_or("-")
            ));
        }
    }
    let precision = correct as f64 / detections.max(1) as f64;
    let recall = correct as f64 / positives.max(1) as f64;
    println!("{lines} lines: {positives} positive, {negatives} hard negative");
    println!("precision {precision:.4}  recall {recall:.4}  ({correct} correct of {detections} detections; {exact_id} with the exact signature id)");
    for m in &misses {
        println!("  {m}");
    }
    assert!(
        lines >= MIN_LINES,
        "corpus has {lines} lines, want at least {MIN_LINES}"
    );
    assert!(
        negatives * 2 >= lines,
        "at least half the corpus must be hard negatives"
    );
    assert!(
        precision >= MIN_PRECISION,
        "precision {precision:.4} < {MIN_PRECISION}"
    );
    assert!(recall >= MIN_RECALL, "recall {recall:.4} < {MIN_RECALL}");
    let exact = exact_id as f64 / correct.max(1) as f64;
    assert!(
        exact >= MIN_EXACT_ID_SHARE,
        "{exact_id} of {correct} detections name the labelled signature"
    );
}
