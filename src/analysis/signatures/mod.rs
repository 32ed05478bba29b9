//! The signature engine: recognises out-of-memory and crash lines in last words.
//!
//! Signatures are data (`config/signatures.toml`, compiled in; a user file adds or overrides
//! entries by id). Matching a line costs one Aho–Corasick pass over the raw bytes for the
//! signatures' literal keywords; only lines with a keyword hit are unwrapped (JSON loggers,
//! Docker json-file, logfmt, Fluent Bit: `render.rs`) and tried against the candidate
//! signatures' regexes, on each reading of the line with its prefixes taken off. A non-matching
//! line therefore never touches a regex — except one holding a JSON `\u` escape, whose keywords
//! are looked up again in its unwrapped message (python-json-logger escapes non-ASCII text).
//! A bulk scan (`scan_buffer`) walks the keyword DFA over
//! several parts of the buffer at once, to find the lines worth matching.
//!
//! Loading a library is cheap: the file is parsed and checked entry by entry, and only what
//! a user supplied (`signatures.extra`, or a whole library given as text) is compiled then, so
//! its errors are reported when the config is opened. The regexes, sets and keyword automata
//! of the whole library (≈0.3 s and ≈85 MB for the built-in one) are built on the first line
//! matched ([`SignatureLibrary::compile`] forces it): a scan with nothing to analyse never
//! pays for them. The built-in entries are compiled by a unit test, so their lazy build cannot
//! fail at run time.
//!
//! Length: the library's loading and validation, the keyword automaton and the bulk scan are
//! one engine with one set of invariants (what a line matches is the same on every path); its
//! unit tests are in `tests.rs`, line unwrapping in `render.rs`.

use std::collections::{BTreeMap, HashMap};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{LogEvent, SignatureKind, SignatureMatch};

mod render;
pub use render::{strip_prefixes, unwrap_message};

/// The default library, compiled in.
pub const DEFAULT_LIBRARY: &str = include_str!("../../../config/signatures.toml");

/// A signature as written in the library file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    pub id: String,
    pub runtime: String,
    pub kind: SignatureKind,
    pub keywords: Vec<String>,
    pub patterns: Vec<String>,
    #[serde(default)]
    pub unless: Vec<String>,
    pub explanation: String,
    pub next_step: String,
    /// Where the next step's tools are documented (a runtime's heap-snapshot or heap-dump
    /// option): shown as links in the HTML report and the alert.
    #[serde(default)]
    pub docs: Vec<DocLink>,
    /// `precise` (a named emitter's line) or `generic` (a phrasing no precise entry names).
    #[serde(default)]
    pub tier: Tier,
    /// `false` leaves the entry out of bulk scans (`signatures match`, `scan_buffer`): a line
    /// that only comes inside a report whose own death line is matched, with no word of its own
    /// to key on (a row of the kernel's OOM task table — a report lists hundreds, and its
    /// keyword, `"]  "`, is in ordinary log lines too). Still matched in an instance's last words.
    #[serde(default = "default_true")]
    pub bulk: bool,
    /// `false` exempts the entry from the library-wide `unless` list (its own `unless` still
    /// applies): for a precise entry whose pattern is one emitter's exact wording, and whose
    /// real lines carry what a broad guard keys on (vmselect's refusal quotes the PromQL
    /// selector it refused; fluentd's parser error quotes the regex with its named group).
    /// Generic entries may not use it.
    #[serde(default = "default_true")]
    pub library_unless: bool,
    /// Neighbouring lines that withdraw a match: for a status printed as a block, one field
    /// per line, where another field of the block says the match is not what it seems
    /// (`kubectl describe`'s "Reason: OOMKilled" above "Exit Code: 143": a drained pod).
    #[serde(default)]
    pub refuted_nearby: Option<NearbySpec>,
}

/// Most lines before and after a match that an entry's `refuted_nearby` may read: a block of
/// fields, not a paragraph.
pub const MAX_NEARBY_LINES: usize = 5;

/// An entry's `refuted_nearby`, as written in the library file:
/// `refuted_nearby = { lines = 3, patterns = ['…'] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearbySpec {
    /// How many lines before and after the matched one are read (1 to [`MAX_NEARBY_LINES`]).
    pub lines: usize,
    /// A neighbour matching any of these (on any reading, its prefixes taken off) withdraws the
    /// match. Neighbours are the lines around it in the events or buffer matched: an
    /// instance's last words, or the chunk of a file a bulk scan holds.
    pub patterns: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// A link to documentation, as written in the library file:
/// `docs = [{ label = "…", url = "https://…" }]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocLink {
    pub label: String,
    pub url: String,
}

/// Which tier a signature belongs to. Whatever the order in the file, the library tries precise
/// OOM entries first, then context lines, then the generic OOM tier, then kills without a cause,
/// then crash entries, then shutdown lines: a user's precise entry always wins over a generic
/// phrasing, a line that says both "panic" and "out of memory" is a memory death, and Celery's
/// "WorkerLostError: … signal 9 (SIGKILL)" is a kill, not the exception it is printed as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Precise,
    Generic,
}

impl SignatureSpec {
    /// Position of the entry's group in the matching order (see [`Tier`]).
    fn rank(&self) -> u8 {
        match (self.kind, self.tier) {
            (SignatureKind::Oom, Tier::Precise) => 0,
            (SignatureKind::Context, _) => 1,
            (SignatureKind::Oom, Tier::Generic) => 2,
            (SignatureKind::Kill, _) => 3,
            (SignatureKind::Crash, _) => 4,
            (SignatureKind::Shutdown, _) => 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryFile {
    /// Library-wide hard negatives: a line matching any of these is never a match.
    #[serde(default)]
    unless: Vec<String>,
    /// Hard negatives of the generic tier: a line matching any of these matches no generic
    /// entry (precise entries may still match it).
    #[serde(default)]
    generic_unless: Vec<String>,
    #[serde(default)]
    signature: Vec<SignatureSpec>,
}

/// A parsed library file: library-wide negatives and the signatures.
#[derive(Debug, Clone, Default)]
pub struct LibrarySpec {
    pub unless: Vec<String>,
    pub generic_unless: Vec<String>,
    pub signatures: Vec<SignatureSpec>,
}

/// A signature of the library (its regexes are compiled with the library's automata, on
/// first use: [`SignatureLibrary::compile`]).
#[derive(Debug, Clone)]
pub struct Signature {
    pub spec: SignatureSpec,
}

/// A signature's compiled patterns and negatives.
#[derive(Debug, Clone)]
struct Matcher {
    patterns: PatternList,
    unless: PatternList,
    /// `refuted_nearby`: the reach in lines and the neighbours' patterns.
    refuted_nearby: Option<(usize, PatternList)>,
}

/// Most patterns in one `RegexSet` of a [`PatternList`]. The library-wide and generic-tier
/// negatives hold about 500 and 1,000 patterns: as one set each, their lazy DFA's states were
/// so large that its cache (regex's default 2 MiB) kept filling and being cleared, and a line
/// that matched a pattern paid about 1 ms for the negatives alone. In sets of 50 the same
/// development split (60,106 scored lines) ran in 9.8 s instead of 54 s, for 42 MB more peak
/// memory (16: 7.5 s, +83 MB; 100: 17 s; 200: no gain; one set with a 64 MiB cache: 17 s,
/// +300 MB). Measured 2026-12-02, release build, one core, this machine; BENCHMARKS.md.
const SET_CHUNK: usize = 50;

/// A list of regexes as a few sets (of [`SET_CHUNK`] patterns, in file order): `is_match` is one
/// pass per set over the text whatever the number of patterns in it. Each pattern is also
/// compiled alone, on first need, to extract details from a line a set matched: compiling all
/// of them twice up front was half of the library's start-up (about a second for ~550
/// patterns, paid by every `signatures match`; BENCHMARKS.md).
#[derive(Debug, Clone)]
struct PatternList {
    sources: Vec<String>,
    regexes: Vec<std::sync::OnceLock<Regex>>,
    /// The patterns in file order, [`SET_CHUNK`] to a set (set `k` starts at `k * SET_CHUNK`).
    sets: Vec<RegexSet>,
}

impl PatternList {
    fn new<S: AsRef<str>>(patterns: &[S]) -> std::result::Result<Self, regex::Error> {
        let sets = patterns
            .chunks(SET_CHUNK)
            .map(|part| {
                regex::RegexSetBuilder::new(part.iter().map(AsRef::as_ref))
                    .multi_line(true)
                    .case_insensitive(true)
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(PatternList {
            sources: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
            regexes: patterns
                .iter()
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            sets,
        })
    }

    fn is_match(&self, text: &str) -> bool {
        self.sets.iter().any(|set| set.is_match(text))
    }

    /// The first (in file order) of the regexes that match.
    fn first(&self, text: &str) -> Option<&Regex> {
        let i = self
            .sets
            .iter()
            .enumerate()
            .find_map(|(k, set)| Some(k * SET_CHUNK + set.matches(text).iter().next()?))?;
        Some(self.regexes[i].get_or_init(|| {
            // The set compiled this very pattern with the same flags; alone it is smaller.
            compile_pattern(&self.sources[i]).unwrap_or_else(|e| {
                panic!("a signature pattern compiled in its set but not alone: {e}")
            })
        }))
    }
}

/// What one line matched.
#[derive(Debug, Clone, PartialEq)]
pub struct LineMatch<'a> {
    pub signature: &'a Signature,
    pub details: BTreeMap<String, String>,
    /// The signature's place in the library (its compiled matcher).
    index: usize,
}

/// An ordered, checked set of signatures; its matching machinery is compiled on first use.
#[derive(Debug, Clone)]
pub struct SignatureLibrary {
    signatures: Vec<Signature>,
    /// Library-wide hard negatives, as written.
    unless: Vec<String>,
    /// Hard negatives of the generic tier, as written.
    generic_unless: Vec<String>,
    /// Built by the first match (or [`SignatureLibrary::compile`]); the error text when the
    /// build failed.
    compiled: std::sync::OnceLock<std::result::Result<Compiled, String>>,
}

/// What matching needs, compiled from a library's signatures.
#[derive(Debug, Clone)]
struct Compiled {
    /// Each signature's regexes, in the library's order.
    matchers: Vec<Matcher>,
    /// Library-wide hard negatives.
    unless: PatternList,
    /// Hard negatives of the generic tier.
    generic_unless: PatternList,
    /// Keywords of every signature: what `match_line` uses (an instance's last words).
    prefilter: Prefilter,
    /// Keywords of the OOM and crash signatures only: bulk scanning (`scan_buffer`) reports
    /// deaths, and need not stop at every GC-trace or shutdown line of a large file.
    death_prefilter: Prefilter,
    /// The bulk pass over the death prefilter's keywords.
    death_bulk: BulkAutomaton,
}

/// Which parts of a library are compiled when it is loaded (to report their errors then);
/// the rest is compiled on first use.
#[derive(Debug, Clone, Default)]
struct Checked {
    /// Every entry and negative: a library given whole as text.
    all: bool,
    /// Ids of entries a user file supplied.
    ids: std::collections::HashSet<String>,
    /// Positions from which the library-wide and generic-tier negatives are a user's.
    unless_from: usize,
    generic_unless_from: usize,
}

/// Keyword automaton: `ac` with every keyword and the signature it belongs to (which
/// signatures a line makes candidates).
#[derive(Debug, Clone)]
struct Prefilter {
    ac: AhoCorasick,
    owner: Vec<usize>,
}

/// The bulk pass's automaton, for finding candidate lines in a large buffer: a full DFA over
/// the *minimal* keywords, walked by hand by [`BulkAutomaton::keyword_lines`] rather than
/// through `AhoCorasick::find`. Built only for the signatures bulk scans report (a DFA over a
/// few hundred keywords costs tens of milliseconds of start-up).
///
/// It holds only the *minimal* keywords: one that contains another ("oom killer" holds
/// "oom") is left out, since a line holding it holds the shorter one too. It finds a superset
/// of the candidate lines with about a third fewer states, so the one pass over every byte of
/// a bulk scan runs faster; each line it finds is then read with `ac`, which keeps the
/// keyword contract exact (a signature is tried only on lines holding one of its keywords).
#[derive(Debug, Clone)]
struct BulkAutomaton {
    dfa: aho_corasick::dfa::DFA,
    start: aho_corasick::automaton::StateID,
}

/// Walks interleaved in the bulk pass. One walk's next state is a table load that depends on
/// its previous state, so a single walk waits on that load at every byte; walks over separate
/// parts of the buffer, stepped in lockstep, overlap those waits (about 3× the throughput of
/// one walk with four, measured in an A/B: BENCHMARKS.md).
const BULK_STREAMS: usize = 4;

/// Bytes the bulk pass walks per round (cut at a line start): bounds the candidate lines held
/// before they are matched, in order, and reported.
const BULK_WINDOW_BYTES: usize = 4 << 20;

/// A window shorter than this is walked as one stream (splitting costs more than it saves).
const BULK_MIN_SPLIT_BYTES: usize = 4 << 10;

impl BulkAutomaton {
    fn new(
        signatures: &[Signature],
        include: impl Fn(&Signature) -> bool,
    ) -> std::result::Result<Self, String> {
        use aho_corasick::automaton::Automaton;
        let (keywords, _) = keywords_of(signatures, include);
        // Matching is ASCII case-insensitive, so containment is judged in lower case.
        let mut distinct: Vec<String> = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
        // A JSON record's `\u` escape may hide a keyword: such lines are matched too.
        distinct.push(render::UNICODE_ESCAPE.to_string());
        distinct.sort_unstable();
        distinct.dedup();
        let minimal: Vec<&str> = distinct
            .iter()
            .filter(|k| !distinct.iter().any(|o| o != *k && k.contains(o.as_str())))
            .map(String::as_str)
            .collect();
        // Standard semantics: the DFA is in a match state at every byte that ends a keyword,
        // whatever came before (what `keyword_lines` relies on). Unanchored, without the
        // prefilter (this walk does not use it) — a full DFA: with a few hundred
        // case-insensitive keywords the NFA is several times slower.
        let problem = |e: String| format!("signature keywords: {e}");
        let dfa = aho_corasick::dfa::Builder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .start_kind(aho_corasick::StartKind::Unanchored)
            .prefilter(false)
            .build(&minimal)
            .map_err(|e| problem(e.to_string()))?;
        let start = dfa
            .start_state(aho_corasick::Anchored::No)
            .map_err(|e| problem(e.to_string()))?;
        Ok(BulkAutomaton { dfa, start })
    }

    /// Appends to `lines` the byte ranges (newline excluded) of the lines of `window` that hold
    /// a keyword, in order, each once. A keyword without a newline ends on the line where it
    /// starts, and the DFA (standard semantics, never reset between lines) is in a match state
    /// at the byte that ends it, so every line holding one is listed; a line listed for another
    /// reason (a user keyword holding a newline) costs only its own matching, which finds
    /// nothing there that it would not find anyway.
    ///
    /// The window is cut at line starts into [`BULK_STREAMS`] parts, walked in lockstep from the
    /// start state; the longer parts' tails are then walked alone.
    fn keyword_lines(&self, window: &[u8], lines: &mut Vec<(usize, usize)>) {
        use aho_corasick::automaton::Automaton;
        const NO: aho_corasick::Anchored = aho_corasick::Anchored::No;
        let streams = if window.len() < BULK_MIN_SPLIT_BYTES {
            1
        } else {
            BULK_STREAMS
        };
        let mut cuts = [window.len(); BULK_STREAMS + 1];
        cuts[0] = 0;
        for j in 1..streams {
            let from = (window.len() * j / streams).max(cuts[j - 1]);
            cuts[j] = memchr::memchr(b'\n', &window[from..]).map_or(window.len(), |i| from + i + 1);
        }
        let parts: [&[u8]; BULK_STREAMS] = std::array::from_fn(|j| &window[cuts[j]..cuts[j + 1]]);
        let mut found: [Vec<(usize, usize)>; BULK_STREAMS] = Default::default();
        // A hit at byte `i` of part `j`: its line, unless that line is already listed.
        let mut listed_to = [0usize; BULK_STREAMS];
        let mut note = |j: usize, i: usize, found: &mut [Vec<(usize, usize)>; BULK_STREAMS]| {
            if i < listed_to[j] {
                return;
            }
            let part = parts[j];
            let start = memchr::memrchr(b'\n', &part[..i]).map_or(0, |k| k + 1);
            let end = memchr::memchr(b'\n', &part[i..]).map_or(part.len(), |k| i + k);
            listed_to[j] = end;
            found[j].push((cuts[j] + start, cuts[j] + end));
        };
        let lockstep = parts.iter().map(|p| p.len()).min().unwrap_or(0);
        let heads: [&[u8]; BULK_STREAMS] = std::array::from_fn(|j| &parts[j][..lockstep]);
        let mut state = [self.start; BULK_STREAMS];
        for i in 0..lockstep {
            let mut hit = false;
            for (sid, head) in state.iter_mut().zip(&heads) {
                *sid = self.dfa.next_state(NO, *sid, head[i]);
                hit |= self.dfa.is_match(*sid);
            }
            if hit {
                for (j, &sid) in state.iter().enumerate() {
                    if self.dfa.is_match(sid) {
                        note(j, i, &mut found);
                    }
                }
            }
        }
        for (j, part) in parts.iter().enumerate() {
            let mut sid = state[j];
            for (i, &b) in part.iter().enumerate().skip(lockstep) {
                sid = self.dfa.next_state(NO, sid, b);
                if self.dfa.is_match(sid) {
                    note(j, i, &mut found);
                }
            }
        }
        for part in found {
            lines.extend(part);
        }
    }
}

/// The signatures bulk scans report: OOM, crash and kill entries not marked `bulk = false`.
fn bulk_reported(sig: &Signature) -> bool {
    sig.spec.kind.is_death() && sig.spec.bulk
}

/// The non-empty keywords of the signatures `include` keeps, each with the index of the
/// signature it belongs to.
fn keywords_of(
    signatures: &[Signature],
    include: impl Fn(&Signature) -> bool,
) -> (Vec<&str>, Vec<usize>) {
    let mut keywords = Vec::new();
    let mut owner = Vec::new();
    for (i, sig) in signatures.iter().enumerate().filter(|(_, s)| include(s)) {
        for k in sig.spec.keywords.iter().filter(|k| !k.trim().is_empty()) {
            keywords.push(k.as_str());
            owner.push(i);
        }
    }
    (keywords, owner)
}

impl Prefilter {
    /// The signatures with a keyword in `text`: the first 128 as bits, the rest listed.
    fn candidates(&self, text: &str) -> (u128, Vec<usize>) {
        let mut candidates: u128 = 0;
        let mut overflow: Vec<usize> = Vec::new();
        for m in self.ac.find_overlapping_iter(text) {
            let owner = self.owner[m.pattern().as_usize()];
            if owner < 128 {
                candidates |= 1u128 << owner;
            } else if !overflow.contains(&owner) {
                overflow.push(owner);
            }
        }
        (candidates, overflow)
    }

    fn new(
        signatures: &[Signature],
        include: impl Fn(&Signature) -> bool,
    ) -> std::result::Result<Self, String> {
        let (keywords, owner) = keywords_of(signatures, include);
        // A full DFA: with a few hundred case-insensitive keywords the default NFA (and its
        // SIMD prefilter, which stops at a few dozen patterns) is several times slower.
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .map_err(|e| format!("signature keywords: {e}"))?;
        Ok(Prefilter { ac, owner })
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.spec.id == other.spec.id
    }
}

impl SignatureLibrary {
    /// The compiled-in default library (checked, not compiled: its entries are compiled by a
    /// unit test, the library's automata on first use).
    pub fn default_library() -> Result<Self> {
        Self::checked(
            parse_specs(DEFAULT_LIBRARY, "config/signatures.toml (built in)")?,
            Checked::default(),
        )
    }

    /// A whole library from TOML text (the default library's format), without the default
    /// entries: used to measure a candidate library against the corpora without rebuilding.
    /// Every entry is compiled when loaded.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        Self::from_spec(parse_specs(text, origin)?)
    }

    /// The default library with a user file merged in: entries with a known id replace the
    /// default entry in place; new ids are appended; library-wide negatives are added. What
    /// the user file supplies is compiled when loaded (its errors are reported now, each
    /// naming its entry); the rest on first use.
    pub fn with_overrides(user_text: &str, origin: &str) -> Result<Self> {
        let mut lib = parse_specs(DEFAULT_LIBRARY, "config/signatures.toml (built in)")?;
        let user = parse_specs(user_text, origin)?;
        let checked = Checked {
            all: false,
            ids: user.signatures.iter().map(|s| s.id.clone()).collect(),
            unless_from: lib.unless.len(),
            generic_unless_from: lib.generic_unless.len(),
        };
        lib.unless.extend(user.unless);
        lib.generic_unless.extend(user.generic_unless);
        for spec in user.signatures {
            match lib.signatures.iter_mut().find(|s| s.id == spec.id) {
                Some(existing) => *existing = spec,
                None => lib.signatures.push(spec),
            }
        }
        Self::checked(lib, checked)
    }

    /// A library from its parts, every entry compiled now (every invalid one reported at
    /// once); the keyword automata on first use.
    pub fn from_spec(spec: LibrarySpec) -> Result<Self> {
        Self::checked(
            spec,
            Checked {
                all: true,
                ..Checked::default()
            },
        )
    }

    /// Orders and checks a library: ids, keywords and patterns present for every entry; the
    /// regexes (and their sets) of the parts `check` names compiled, reporting every invalid
    /// one at once.
    fn checked(spec: LibrarySpec, check: Checked) -> Result<Self> {
        let LibrarySpec {
            unless,
            generic_unless,
            signatures: specs,
        } = spec;
        // Stable: within a group the file's order decides. Problems name the entry by its
        // place in the file, not in the matching order.
        let mut specs: Vec<(usize, SignatureSpec)> = specs.into_iter().enumerate().collect();
        specs.sort_by_key(|(_, s)| s.rank());
        let mut problems = Vec::new();
        let global_unless = check_list(
            &unless,
            check.unless_from,
            check.all,
            "unless",
            &mut problems,
        );
        let generic = check_list(
            &generic_unless,
            check.generic_unless_from,
            check.all,
            "generic_unless",
            &mut problems,
        );
        let mut compiled = Vec::new();
        let mut seen = HashMap::new();
        for (i, spec) in &specs {
            let at = format!("signature[{i}] (id `{}`)", spec.id);
            if seen.insert(spec.id.clone(), i).is_some() {
                problems.push(format!("{at}: duplicate id"));
            }
            if spec.keywords.iter().all(|k| k.trim().is_empty()) {
                problems.push(format!("{at}: keywords: at least one non-empty keyword is required (it drives the prefilter)"));
            }
            if spec.patterns.is_empty() {
                problems.push(format!("{at}: patterns: at least one pattern is required"));
            }
            if !spec.library_unless && spec.tier == Tier::Generic {
                problems.push(format!("{at}: library_unless = false is for precise entries only (a generic entry must keep the library-wide guards)"));
            }
            if let Some(nearby) = &spec.refuted_nearby {
                if !(1..=MAX_NEARBY_LINES).contains(&nearby.lines) {
                    problems.push(format!(
                        "{at}: refuted_nearby.lines: {} is not between 1 and {MAX_NEARBY_LINES}",
                        nearby.lines
                    ));
                }
                if nearby.patterns.is_empty() {
                    problems.push(format!(
                        "{at}: refuted_nearby.patterns: at least one pattern is required"
                    ));
                }
            }
            if check.all || check.ids.contains(&spec.id) {
                let patterns =
                    compile_list(&spec.patterns, 0, &format!("{at}: patterns"), &mut problems);
                let unless = compile_list(&spec.unless, 0, &format!("{at}: unless"), &mut problems);
                let nearby = spec
                    .refuted_nearby
                    .as_ref()
                    .map_or(&[][..], |n| &n.patterns[..]);
                let nearby = compile_list(
                    nearby,
                    0,
                    &format!("{at}: refuted_nearby.patterns"),
                    &mut problems,
                );
                compiled.push((patterns, unless, nearby));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        // The sets of what was compiled: their errors (size limits) are reported now too.
        let set_error = |e: regex::Error| Error::Config(vec![format!("signature patterns: {e}")]);
        fn sources(list: &[Regex]) -> Vec<&str> {
            list.iter().map(Regex::as_str).collect()
        }
        for (patterns, unless, nearby) in compiled {
            PatternList::new(&sources(&patterns)).map_err(set_error)?;
            PatternList::new(&sources(&unless)).map_err(set_error)?;
            PatternList::new(&sources(&nearby)).map_err(set_error)?;
        }
        for list in [global_unless, generic].into_iter().flatten() {
            PatternList::new(&sources(&list)).map_err(set_error)?;
        }
        Ok(SignatureLibrary {
            signatures: specs
                .into_iter()
                .map(|(_, spec)| Signature { spec })
                .collect(),
            unless,
            generic_unless,
            compiled: std::sync::OnceLock::new(),
        })
    }

    /// Compiles what matching needs (once; later calls return at once): every signature's
    /// regexes and sets, the negatives and the keyword automata. Matching compiles on first
    /// use anyway; calling this first turns a failure into an error instead of a panic.
    pub fn compile(&self) -> Result<()> {
        match self.compiled.get_or_init(|| self.build()) {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Config(vec![e.clone()])),
        }
    }

    /// The compiled library. Whatever a user supplied was compiled when the library was
    /// loaded and the built-in entries are compiled by a unit test, so the build cannot fail
    /// on a loaded library; if it does, that is a defect, reported as one.
    fn ready(&self) -> &Compiled {
        match self.compiled.get_or_init(|| self.build()) {
            Ok(c) => c,
            Err(e) => panic!("the signature library failed to compile after it was checked: {e}"),
        }
    }

    fn build(&self) -> std::result::Result<Compiled, String> {
        let list = |patterns: &[String]| -> std::result::Result<PatternList, String> {
            PatternList::new(patterns).map_err(|e| {
                // Name the pattern when one alone fails (the set's error does not say which).
                match patterns.iter().find_map(|p| compile_pattern(p).err()) {
                    Some(one) => format!("signature patterns: {one}"),
                    None => format!("signature patterns: {e}"),
                }
            })
        };
        let mut matchers = Vec::with_capacity(self.signatures.len());
        for s in &self.signatures {
            matchers.push(Matcher {
                patterns: list(&s.spec.patterns).map_err(|e| format!("{}: {e}", s.spec.id))?,
                unless: list(&s.spec.unless).map_err(|e| format!("{}: {e}", s.spec.id))?,
                refuted_nearby: match &s.spec.refuted_nearby {
                    Some(n) => Some((
                        n.lines,
                        list(&n.patterns).map_err(|e| format!("{}: {e}", s.spec.id))?,
                    )),
                    None => None,
                },
            });
        }
        Ok(Compiled {
            matchers,
            unless: list(&self.unless)?,
            generic_unless: list(&self.generic_unless)?,
            prefilter: Prefilter::new(&self.signatures, |_| true)?,
            death_prefilter: Prefilter::new(&self.signatures, bulk_reported)?,
            death_bulk: BulkAutomaton::new(&self.signatures, bulk_reported)?,
        })
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    pub fn get(&self, id: &str) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.spec.id == id)
    }

    /// The regex patterns bulk matching (`scan_buffer`) uses — those of the entries bulk scans
    /// report — for tools that want to compare (e.g. `rg -f`).
    pub fn all_patterns(&self) -> impl Iterator<Item = &str> {
        self.signatures
            .iter()
            .filter(|s| bulk_reported(s))
            .flat_map(|s| s.spec.patterns.iter().map(String::as_str))
    }

    /// The first signature (in library order) that matches the line, if any.
    pub fn match_line(&self, line: &str) -> Option<LineMatch<'_>> {
        let c = self.ready();
        self.match_line_with(c, &c.prefilter, line)
    }

    /// The first OOM or crash signature (in library order) that matches the line, context and
    /// shutdown entries left out: what [`scan_buffer`](Self::scan_buffer) reports for a line.
    pub fn match_death_line(&self, line: &str) -> Option<LineMatch<'_>> {
        let c = self.ready();
        self.match_line_with(c, &c.death_prefilter, line)
    }

    fn match_line_with<'a>(
        &'a self,
        c: &'a Compiled,
        prefilter: &Prefilter,
        line: &str,
    ) -> Option<LineMatch<'a>> {
        // Prefilter: which signatures have a keyword in the raw line? (In a JSON record whose
        // message is written with `\u` escapes, in the message taken out of it.)
        let mut unwrapped = None;
        let (candidates, mut overflow) = match prefilter.candidates(line) {
            (0, o) if o.is_empty() && render::has_unicode_escape(line) => {
                let message = unwrap_message(line);
                let found = prefilter.candidates(&message);
                unwrapped = Some(message);
                found
            }
            found => found,
        };
        if candidates == 0 && overflow.is_empty() {
            return None;
        }
        overflow.sort_unstable();
        let unwrapped = unwrapped.unwrap_or_else(|| unwrap_message(line));
        let views = render::readings(&unwrapped);
        let candidate_ids = (0..self.signatures.len().min(128))
            .filter(|i| candidates & (1u128 << i) != 0)
            .chain(overflow);
        // The negatives are evaluated once, and only for a line that matched a pattern: most
        // candidate lines match none, and never pay for them.
        let blocked = |list: &PatternList| views.iter().any(|v| list.is_match(v));
        let (mut global_blocked, mut generic_blocked) = (None, None);
        for i in candidate_ids {
            let (sig, matcher) = (&self.signatures[i], &c.matchers[i]);
            // Anchored patterns need the prefix gone; others may need it (a level word).
            let Some(details) = matcher.matches(&views) else {
                continue;
            };
            // A guarded line matches no entry but one exempt from the library-wide guards
            // (`library_unless = false`), which may come later among the candidates.
            if sig.spec.library_unless && *global_blocked.get_or_insert_with(|| blocked(&c.unless))
            {
                continue;
            }
            if sig.spec.tier == Tier::Generic
                && *generic_blocked.get_or_insert_with(|| blocked(&c.generic_unless))
            {
                continue;
            }
            return Some(LineMatch {
                signature: sig,
                details,
                index: i,
            });
        }
        None
    }

    /// Scans a buffer of newline-separated lines and calls `on_match(line_number, line, m)`
    /// (1-based line numbers, counted from `first_line`) for each line that matches an OOM or
    /// crash signature (context and shutdown lines only matter inside last words): for each
    /// line, what [`match_death_line`](Self::match_death_line) answers. One keyword-automaton
    /// pass runs over the whole buffer (several interleaved walks, see `BULK_STREAMS`); only
    /// lines holding a keyword are cut out and matched, so a non-matching line costs a share of
    /// that pass. Returns the number of lines in the buffer.
    pub fn scan_buffer(
        &self,
        buf: &[u8],
        first_line: usize,
        on_match: impl FnMut(usize, &str, LineMatch<'_>),
    ) -> usize {
        self.scan_windows(buf, first_line, BULK_WINDOW_BYTES, on_match)
    }

    /// [`scan_buffer`](Self::scan_buffer) with the window size as a parameter (tests cut
    /// windows small to exercise their edges).
    fn scan_windows(
        &self,
        buf: &[u8],
        first_line: usize,
        window_bytes: usize,
        mut on_match: impl FnMut(usize, &str, LineMatch<'_>),
    ) -> usize {
        let mut counted_to = 0usize;
        let mut line_no = first_line;
        let mut window_start = 0usize;
        let mut lines = Vec::new();
        while window_start < buf.len() {
            let window_end = if buf.len() - window_start <= window_bytes {
                buf.len()
            } else {
                let from = window_start + window_bytes.max(1);
                memchr::memchr(b'\n', &buf[from..]).map_or(buf.len(), |i| from + i + 1)
            };
            lines.clear();
            self.ready()
                .death_bulk
                .keyword_lines(&buf[window_start..window_end], &mut lines);
            for &(start, end) in &lines {
                let (start, end) = (window_start + start, window_start + end);
                line_no += memchr::memchr_iter(b'\n', &buf[counted_to..start]).count();
                counted_to = start;
                let mut raw = &buf[start..end];
                if raw.last() == Some(&b'\r') {
                    raw = &raw[..raw.len() - 1];
                }
                let line = String::from_utf8_lossy(raw);
                if let Some(m) = self.match_death_line(&line) {
                    let reach = self.nearby_reach(&m);
                    if reach == 0 || !self.refuted(&m, lines_around(buf, start, end, reach)) {
                        on_match(line_no, &line, m);
                    }
                }
            }
            window_start = window_end;
        }
        let tail_newlines = memchr::memchr_iter(b'\n', &buf[counted_to.min(buf.len())..]).count();
        let lines = line_no - first_line + tail_newlines;
        lines + usize::from(!buf.is_empty() && buf[buf.len() - 1] != b'\n')
    }

    /// Matches every event; `line` in the result is the event's index. A match that a
    /// neighbouring event refutes (the entry's `refuted_nearby`) is left out.
    pub fn match_events(&self, events: &[LogEvent]) -> Vec<SignatureMatch> {
        events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let m = self.match_line(&e.message)?;
                let reach = self.nearby_reach(&m);
                let around = (i.saturating_sub(reach)..events.len().min(i + reach + 1))
                    .filter(|&j| j != i)
                    .map(|j| events[j].message.as_bytes());
                if reach > 0 && self.refuted(&m, around) {
                    return None;
                }
                Some(m.into_signature_match(i, &e.message))
            })
            .collect()
    }

    /// How many lines around a match its entry's `refuted_nearby` reads (0: none).
    fn nearby_reach(&self, m: &LineMatch<'_>) -> usize {
        self.ready().matchers[m.index]
            .refuted_nearby
            .as_ref()
            .map_or(0, |(reach, _)| *reach)
    }

    /// Whether one of the lines around a match (its entry's reach of them) withdraws it.
    fn refuted<'t>(&self, m: &LineMatch<'_>, around: impl IntoIterator<Item = &'t [u8]>) -> bool {
        let Some((_, list)) = &self.ready().matchers[m.index].refuted_nearby else {
            return false;
        };
        around.into_iter().any(|raw| {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = String::from_utf8_lossy(raw);
            let message = unwrap_message(&text);
            render::readings(&message).iter().any(|v| list.is_match(v))
        })
    }
}

/// Up to `reach` lines before and after the line `buf[start..end]` (newlines excluded).
fn lines_around(buf: &[u8], start: usize, end: usize, reach: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(reach * 2);
    let mut from = start;
    for _ in 0..reach {
        if from == 0 {
            break;
        }
        let line_start = memchr::memrchr(b'\n', &buf[..from - 1]).map_or(0, |k| k + 1);
        out.push(&buf[line_start..from - 1]);
        from = line_start;
    }
    let mut to = end;
    for _ in 0..reach {
        if to + 1 >= buf.len() {
            break;
        }
        let line_end = memchr::memchr(b'\n', &buf[to + 1..]).map_or(buf.len(), |k| to + 1 + k);
        out.push(&buf[to + 1..line_end]);
        to = line_end;
    }
    out
}

impl LineMatch<'_> {
    pub fn into_signature_match(self, line: usize, text: &str) -> SignatureMatch {
        SignatureMatch {
            signature: self.signature.spec.id.clone(),
            runtime: self.signature.spec.runtime.clone(),
            kind: self.signature.spec.kind,
            line,
            text: text.to_string(),
            details: self.details,
        }
    }
}

impl Matcher {
    /// The extracted details when a reading of the (unwrapped) line matches (the first that
    /// does, in order) and no `unless` applies to any reading.
    fn matches(&self, views: &[&str]) -> Option<BTreeMap<String, String>> {
        let (re, text) = views
            .iter()
            .find_map(|v| self.patterns.first(v).map(|re| (re, *v)))?;
        if views.iter().any(|v| self.unless.is_match(v)) {
            return None;
        }
        let caps = re.captures(text)?;
        Some(
            re.capture_names()
                .flatten()
                .filter_map(|name| Some((name.to_string(), caps.name(name)?.as_str().to_string())))
                .collect(),
        )
    }
}

fn parse_specs(text: &str, origin: &str) -> Result<LibrarySpec> {
    let file: LibraryFile = toml::from_str(text).map_err(|e| {
        let location = match e.span() {
            Some(span) => format!("{origin}:{}", line_of(text, span.start)),
            None => origin.to_string(),
        };
        Error::input(location, e.message().to_string())
    })?;
    Ok(LibrarySpec {
        unless: file.unless,
        generic_unless: file.generic_unless,
        signatures: file.signature,
    })
}

/// Compiles the entries of a list of negatives from position `from` on (all of it with
/// `all`), reporting each invalid one as `field[j]: invalid regex: …`; None when no entry was
/// to be compiled.
fn check_list(
    list: &[String],
    from: usize,
    all: bool,
    field: &str,
    problems: &mut Vec<String>,
) -> Option<Vec<Regex>> {
    let from = if all { 0 } else { from.min(list.len()) };
    if from == list.len() {
        return None;
    }
    let mut out = compile_list(&list[from..], from, field, problems);
    // The set is built over the whole list, as matching builds it.
    if from > 0 {
        let mut head = compile_list(&list[..from], 0, field, &mut Vec::new());
        head.append(&mut out);
        out = head;
    }
    Some(out)
}

/// Compiles a list of patterns, the first being the list's entry `offset`; each invalid one
/// is reported as `field[j]: invalid regex: …`.
fn compile_list(
    list: &[String],
    offset: usize,
    field: &str,
    problems: &mut Vec<String>,
) -> Vec<Regex> {
    list.iter()
        .enumerate()
        .filter_map(|(j, p)| match compile_pattern(p) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("{field}[{}]: invalid regex: {e}", j + offset));
                None
            }
        })
        .collect()
}

/// Patterns run in multi-line mode: `^` and `$` also match at line breaks inside an unwrapped
/// message (a JSON logger's stack trace, a Docker record's embedded newline). They are
/// case-insensitive, as the keyword prefilter is: runtimes and versions differ in case
/// ("Out of memory", "out of memory", "OUT OF MEMORY"); `(?-i)` turns it off inside a pattern.
fn compile_pattern(p: &str) -> std::result::Result<Regex, regex::Error> {
    regex::RegexBuilder::new(p)
        .multi_line(true)
        .case_insensitive(true)
        .build()
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
