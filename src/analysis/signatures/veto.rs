//! The generic tier's veto: a linear model over one line's words that a generic match must pass.
//!
//! The generic tier matches memory-death phrasings no precise entry names, and its false alarms
//! on programs nobody tuned for are mostly prose and near-misses: an issue title, a docs
//! sentence, a changelog bullet, a warning the program survives. A logistic regression trained on
//! the sourced corpus' development split (`scripts/train_generic_veto.py`; `config/generic_veto.bin`,
//! compiled in) reads the whole line, and a line that only the generic tier matched is not
//! flagged when the model gives it less than [`GENERIC_VETO_BELOW`]. Precise entries are never
//! vetoed: they name an emitter's own wording.
//!
//! Features (the training script's `features` must stay in step; `config/generic_veto.golden.tsv`
//! holds the probabilities the script computed, and a unit test checks this side against them):
//! the line lower-cased, hex literals folded to ` hx ` and digit runs to `0`; byte 3-, 4- and
//! 5-grams inside each whitespace-separated word padded with one space on each side, and word
//! unigrams and bigrams of `[a-z_]+`; each of the two sets hashed (FNV-1a, with a one-byte kind
//! prefix) into 2^bits slots, de-duplicated and L2-normalised.
//!
//! Measured forward-chained on rounds 23-26 (trained on earlier rounds, scored on a round nobody
//! had tuned to; BENCHMARKS.md): at 0.2 it removes about a quarter of the false alarms the
//! generic tier raised there, for about 0.4 points of recall.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

/// A line only the generic tier matched is not flagged below this model probability.
pub const GENERIC_VETO_BELOW: f64 = 0.2;

/// The trained model, compiled in.
const MODEL: &[u8] = include_bytes!("../../../config/generic_veto.bin");
const MAGIC: &[u8; 8] = b"EPVETO01";

/// Hashed feature weights (`weight = q * scale`) and the bias.
#[derive(Debug)]
pub struct VetoModel {
    bits: u32,
    bias: f64,
    scale: f64,
    weights: Vec<i16>,
}

impl VetoModel {
    /// Parses the model format the training script writes (little-endian: magic, `u32` bits,
    /// `f32` bias, `f32` scale, `2^bits` `i16` weights).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let header = MAGIC.len() + 12;
        if bytes.len() < header || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a generic-veto model (bad magic)".to_string());
        }
        let word = |at: usize| -> [u8; 4] { bytes[at..at + 4].try_into().expect("4 bytes") };
        let bits = u32::from_le_bytes(word(8));
        if !(8..=24).contains(&bits) {
            return Err(format!("generic-veto model: bits {bits} outside 8..=24"));
        }
        let bias = f64::from(f32::from_le_bytes(word(12)));
        let scale = f64::from(f32::from_le_bytes(word(16)));
        let slots = 1usize << bits;
        if bytes.len() != header + 2 * slots {
            return Err(format!(
                "generic-veto model: {} bytes, expected {} for {bits} bits",
                bytes.len(),
                header + 2 * slots
            ));
        }
        let weights = bytes[header..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(VetoModel {
            bits,
            bias,
            scale,
            weights,
        })
    }

    /// The compiled-in model (parsed once; its format is checked by a unit test).
    pub fn built_in() -> &'static VetoModel {
        static MODEL_ONCE: OnceLock<VetoModel> = OnceLock::new();
        MODEL_ONCE.get_or_init(|| {
            VetoModel::parse(MODEL)
                .unwrap_or_else(|e| panic!("config/generic_veto.bin (built in): {e}"))
        })
    }

    /// The model's probability that the line is a memory death.
    pub fn probability(&self, line: &str) -> f64 {
        let z = features(line, self.bits)
            .into_iter()
            .fold(self.bias, |z, (slot, value)| {
                z + f64::from(self.weights[slot as usize]) * self.scale * value
            });
        1.0 / (1.0 + (-z).exp())
    }
}

fn fnv1a(kind: u8, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in std::iter::once(&kind).chain(data) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The line as the features see it: lower-cased, hex literals and digit runs folded.
fn fold(line: &str) -> String {
    static HEX: OnceLock<Regex> = OnceLock::new();
    static DIGITS: OnceLock<Regex> = OnceLock::new();
    let hex = HEX.get_or_init(|| Regex::new("0x[0-9a-f]+").expect("valid regex"));
    let digits = DIGITS.get_or_init(|| Regex::new("[0-9]+").expect("valid regex"));
    let lower = line.to_lowercase();
    let text = hex.replace_all(&lower, " hx ");
    digits.replace_all(&text, "0").into_owned()
}

/// The hashed, per-set L2-normalised features of one line: `(slot, value)`, slots unique.
pub fn features(line: &str, bits: u32) -> Vec<(u32, f64)> {
    let mask = (1u64 << bits) - 1;
    let text = fold(line);
    let mut grams: Vec<u32> = Vec::new();
    for word in text.split_whitespace() {
        let mut padded = Vec::with_capacity(word.len() + 2);
        padded.push(b' ');
        padded.extend_from_slice(word.as_bytes());
        padded.push(b' ');
        for n in 3..=5 {
            for gram in padded.windows(n) {
                grams.push((fnv1a(b'c', gram) & mask) as u32);
            }
        }
    }
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut terms: Vec<u32> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        terms.push((fnv1a(b'w', w.as_bytes()) & mask) as u32);
        if let Some(next) = words.get(i + 1) {
            let bigram = format!("{w} {next}");
            terms.push((fnv1a(b'b', bigram.as_bytes()) & mask) as u32);
        }
    }
    let mut out: HashMap<u32, f64> = HashMap::new();
    for mut set in [grams, terms] {
        set.sort_unstable();
        set.dedup();
        if set.is_empty() {
            continue;
        }
        let value = 1.0 / (set.len() as f64).sqrt();
        for slot in set {
            *out.entry(slot).or_insert(0.0) += value;
        }
    }
    let mut out: Vec<(u32, f64)> = out.into_iter().collect();
    out.sort_unstable_by_key(|&(slot, _)| slot);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust features and the quantised model give the probabilities the training script
    /// computed for its golden lines (the two feature extractions are in step).
    #[test]
    fn agrees_with_the_training_script() {
        let golden = include_str!("../../../config/generic_veto.golden.tsv");
        let model = VetoModel::built_in();
        let mut checked = 0;
        for (n, row) in golden.lines().enumerate() {
            if row.starts_with('#') {
                continue;
            }
            let (p, line) = row
                .split_once('\t')
                .unwrap_or_else(|| panic!("generic_veto.golden.tsv:{}: no TAB", n + 1));
            let want: f64 = p.parse().unwrap();
            let line = line.replace("\\t", "\t");
            let got = model.probability(&line);
            assert!(
                (got - want).abs() < 2e-6,
                "generic_veto.golden.tsv:{}: {got} vs {want}: {line}",
                n + 1
            );
            checked += 1;
        }
        assert!(checked >= 40, "{checked} golden lines");
    }

    #[test]
    fn rejects_a_damaged_model() {
        assert!(VetoModel::parse(b"EPVETO01").is_err());
        assert!(VetoModel::parse(&MODEL[..MODEL.len() - 2]).is_err());
        let mut wrong = MODEL.to_vec();
        wrong[0] = b'X';
        assert!(VetoModel::parse(&wrong).unwrap_err().contains("magic"));
    }

    #[test]
    fn features_are_unique_and_normalised() {
        let f = features("Out of memory: Killed process 4242 (node) 0xdeadbeef", 18);
        let mut slots: Vec<u32> = f.iter().map(|&(s, _)| s).collect();
        slots.dedup();
        assert_eq!(slots.len(), f.len());
        // Two L2-normalised sets: squared values sum to 2 when no slot is shared.
        let norm: f64 = f.iter().map(|&(_, v)| v * v).sum();
        assert!(norm > 1.9 && norm <= 4.0, "{norm}");
        assert!(features("", 18).is_empty());
    }
}
