//! Masks secrets in text before it leaves the process (alerts, HTML report, API): cloud and
//! SaaS tokens recognised by their documented prefixes (the gitleaks and trufflehog rule
//! families), bearer and basic credentials, passwords in URLs and connection strings,
//! `KEY=value` pairs whose key names a secret (environment variables with any prefix, JSON,
//! YAML, struct dumps, query parameters, cookies, command-line flags), private keys, plus
//! patterns the user configures.
//!
//! Every rule marks the *span* that holds the secret; spans from all rules are merged and
//! replaced in one pass, so rules never see each other's output, labels stay readable
//! (`password=[REDACTED]`), and masking is idempotent: a mask, a placeholder (`${DB_PASSWORD}`,
//! `<your-api-key>`, `****`, `[FILTERED]`) or an empty value is never masked again.
//!
//! Length: the rule engine (spans, key classification, placeholders) is one pass with one
//! invariant (idempotent masking); the rules themselves are data in config/redaction.toml;
//! about 260 lines are its unit tests.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};
use serde::Deserialize;

use crate::error::{Error, Result};

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// What a private key (or a line inside a private-key block) is replaced with.
const PEM_BODY_MASK: &str = "[REDACTED PRIVATE KEY]";

/// How a rule's match is turned into a span to mask (`kind` in `config/redaction.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// The `s` group (or the whole match) is a secret by its shape alone.
    Token,
    /// The `s` group is a secret if it looks like a credential rather than a word
    /// (it follows a weak context such as `Bearer` without a header name).
    Credential,
    /// A private key: the whole match, replaced with [`PEM_BODY_MASK`].
    PrivateKey,
    /// `key<sep>value` where the key is classified by [`key_strength`].
    Pair,
    /// `key 'quoted value'` (no separator) where the key names a password.
    SpacedPassword,
    /// `--flag value` where the flag names a secret.
    Flag,
    /// A pattern the user configured: the whole match, unconditionally.
    #[serde(skip)]
    Extra,
}

/// The built-in rules and word lists, as data (`config/redaction.toml`), embedded at build time.
pub const DEFAULT_RULES: &str = include_str!("../../config/redaction.toml");

/// `config/redaction.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    words: Words,
    rule: Vec<RuleSpec>,
}

/// The word lists that judge a `key<sep>value` pair's key and value (see the file's comments).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Words {
    secret: Vec<String>,
    secret_endings: Vec<String>,
    key_qualifiers: Vec<String>,
    weak: Vec<String>,
    neutral_suffixes: Vec<String>,
    not_after: Vec<String>,
    placeholders: Vec<String>,
    placeholder_prefixes: Vec<String>,
}

/// One `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    kind: Kind,
    regex: String,
}

/// The built-in rule file, parsed once. The file is embedded and checked by the tests (it
/// parses, every rule compiles, names are unique), so an error here is a build defect; it is
/// still reported as a configuration error naming the file, never a panic.
static BUILTIN: LazyLock<std::result::Result<RuleFile, String>> = LazyLock::new(|| {
    let file: RuleFile =
        toml::from_str(DEFAULT_RULES).map_err(|e| format!("config/redaction.toml: {e}"))?;
    let mut seen = std::collections::HashSet::new();
    for r in &file.rule {
        if !seen.insert(r.name.as_str()) {
            return Err(format!(
                "config/redaction.toml: rule `{}` is defined twice",
                r.name
            ));
        }
    }
    Ok(file)
});

/// The built-in word lists (empty if the rule file were broken: [`Redactor::new`] refuses to
/// build then, so no text is ever judged by empty lists).
fn words() -> Option<&'static Words> {
    BUILTIN.as_ref().ok().map(|f| &f.words)
}

/// Whether `list` holds `word`.
fn has(list: &[String], word: &str) -> bool {
    list.iter().any(|w| w == word)
}

/// Existing masks: spans inside them are never masked again.
static EXISTING_MASK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[REDACTED(?: PRIVATE KEY)?\]").expect("valid regex"));

/// The first line of a private-key block (PEM or PGP armour).
static PEM_BEGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----").expect("valid regex")
});
/// The last line of a private-key block.
static PEM_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----").expect("valid regex")
});

/// How strongly a key name says its value is a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Any separator (`=`, `:`, `=>`).
    Strong,
    /// Only `=`-style separators or a quoted key.
    Weak,
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    kind: Kind,
    re: Regex,
}

/// A compiled set of masking rules.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// All rules in one automaton: most lines hold no secret and are passed over in one scan.
    any: RegexSet,
}

impl Redactor {
    /// The built-in rules plus `extra` regexes (whole matches masked). Errors name the
    /// offending item as `alerts.redact_patterns[i]`.
    pub fn new(extra: &[String]) -> Result<Redactor> {
        let builtin = BUILTIN
            .as_ref()
            .map_err(|e| Error::Config(vec![e.clone()]))?;
        let mut rules = Vec::with_capacity(builtin.rule.len() + extra.len());
        for spec in &builtin.rule {
            let re = Regex::new(&spec.regex).map_err(|e| {
                Error::Config(vec![format!(
                    "config/redaction.toml: rule `{}`: {e}",
                    spec.name
                )])
            })?;
            rules.push(Rule {
                kind: spec.kind,
                re,
            });
        }
        for (i, re) in extra.iter().enumerate() {
            let re = Regex::new(re)
                .map_err(|e| Error::Config(vec![format!("alerts.redact_patterns[{i}]: {e}")]))?;
            rules.push(Rule {
                kind: Kind::Extra,
                re,
            });
        }
        let any = RegexSet::new(rules.iter().map(|r| r.re.as_str()))
            .map_err(|e| Error::Config(vec![format!("alerts.redact_patterns: {e}")]))?;
        Ok(Redactor { rules, any })
    }

    /// Masks a sequence of lines (an instance's last words, one event per line) where a
    /// secret may span lines: every line inside a private-key block (from its `BEGIN … PRIVATE
    /// KEY` line to its `END` line) is masked whole, the rest line by line.
    pub fn redact_lines<'a, S: AsRef<str>>(&self, lines: &'a [S]) -> Vec<Cow<'a, str>> {
        let mut in_key = false;
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            let line = line.as_ref();
            if in_key {
                if PEM_END.is_match(line) {
                    in_key = false;
                    out.push(self.redact(line));
                } else {
                    // Owned: callers may take a borrowed line as unchanged.
                    out.push(Cow::Owned(PEM_BODY_MASK.to_string()));
                }
                continue;
            }
            // A BEGIN line whose END is not on the same line opens a block.
            if let Some(m) = PEM_BEGIN.find(line) {
                in_key = !PEM_END.is_match(&line[m.end()..]);
            }
            out.push(self.redact(line));
        }
        out
    }

    /// `text` with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let hits = self.any.matches(text);
        if !hits.matched_any() {
            return Cow::Borrowed(text);
        }
        let mut spans: Vec<Span> = Vec::new();
        for i in hits.iter() {
            collect(&self.rules[i], text, &mut spans);
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        // Never mask inside an existing mask: that is what keeps masking idempotent.
        let masks: Vec<(usize, usize)> = EXISTING_MASK
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        spans.retain(|s| s.start < s.end && !masks.iter().any(|&(a, b)| s.start < b && a < s.end));
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_by_key(|s| (s.start, s.end));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end, mut pem) = (spans[i].start, spans[i].end, spans[i].pem);
            i += 1;
            while i < spans.len() && spans[i].start < end {
                end = end.max(spans[i].end);
                pem |= spans[i].pem;
                i += 1;
            }
            out.push_str(&text[at..start]);
            // A mask never touches a bracket, so a mask inside brackets (`[Bearer …]`) cannot
            // read as a doubled one (`[REDACTED]]`).
            if text[..start].ends_with('[') {
                out.push(' ');
            }
            out.push_str(if pem { PEM_BODY_MASK } else { MASK });
            if text[end..].starts_with(']') {
                out.push(' ');
            }
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }
}

impl Default for Redactor {
    fn default() -> Self {
        // The built-in rules are embedded and tested (`the_rule_file_is_whole`): a failure here
        // is a build defect, and a redactor that masks nothing must never stand in for one.
        Redactor::new(&[]).expect("the built-in redaction rules (config/redaction.toml) compile")
    }
}

/// A byte range of the input to mask.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    /// Replace with [`PEM_BODY_MASK`] rather than [`MASK`].
    pem: bool,
}

/// Adds the spans `rule` finds in `text`.
fn collect(rule: &Rule, text: &str, spans: &mut Vec<Span>) {
    for caps in rule.re.captures_iter(text) {
        let span = match rule.kind {
            Kind::Extra => {
                let Some(m) = caps.get(0) else { continue };
                Span {
                    start: m.start(),
                    end: m.end(),
                    pem: false,
                }
            }
            Kind::Token | Kind::Credential | Kind::PrivateKey => {
                let Some(m) = caps
                    .name("s")
                    .or_else(|| caps.name("s2"))
                    .or_else(|| caps.get(0))
                else {
                    continue;
                };
                let v = m.as_str();
                if rule.kind == Kind::PrivateKey {
                    spans.push(Span {
                        start: m.start(),
                        end: m.end(),
                        pem: true,
                    });
                    continue;
                }
                if is_placeholder(v) {
                    continue;
                }
                if rule.kind == Kind::Credential && !looks_like_credential(v) {
                    continue;
                }
                if is_auth_scheme(v) || is_path(v) {
                    continue;
                }
                // `Bearer expires_in=3600`: a key, not a credential with base64 padding.
                if v.ends_with('=')
                    && text[m.end()..].starts_with(|c: char| c.is_ascii_alphanumeric())
                {
                    continue;
                }
                Span {
                    start: m.start(),
                    end: m.end(),
                    pem: false,
                }
            }
            Kind::Pair => match pair_span(&caps) {
                Some(s) => s,
                None => continue,
            },
            Kind::SpacedPassword => {
                let key = caps.name("key").map_or("", |m| m.as_str());
                let Some(v) = value(&caps) else { continue };
                if !names_password(key) || is_placeholder(v.as_str()) {
                    continue;
                }
                Span {
                    start: v.start(),
                    end: v.end(),
                    pem: false,
                }
            }
            Kind::Flag => {
                let key = caps.name("key").map_or("", |m| m.as_str());
                let Some(v) = value(&caps) else { continue };
                let s = v.as_str();
                let quoted = caps.name("v5").is_none();
                if (key_strength(key) != Some(Strength::Strong) && !names_password(key))
                    || is_placeholder(s)
                    || is_path(s)
                    || (!quoted && !looks_like_credential(s))
                {
                    continue;
                }
                Span {
                    start: v.start(),
                    end: v.end(),
                    pem: false,
                }
            }
        };
        spans.push(span);
    }
}

/// The value group of a pair-like match.
fn value<'t>(caps: &Captures<'t>) -> Option<regex::Match<'t>> {
    ["v1", "v2", "v3", "v4", "v5"]
        .iter()
        .find_map(|n| caps.name(n))
}

/// The span of a `key<sep>value` match whose key names a secret.
fn pair_span(caps: &Captures) -> Option<Span> {
    let pre = caps.name("pre").map_or("", |m| m.as_str());
    let key = caps.name("key")?.as_str();
    let key_quoted = caps.name("kq").is_some() && (pre == "\"" || pre == "'" || pre == "\\");
    let sep = caps.name("sep")?.as_str().trim();
    let v = value(caps)?;
    let unquoted = caps.name("v5").is_some();
    let strength = key_strength(key)?;
    let equals = sep != ":";
    if strength == Strength::Weak && !equals && !key_quoted {
        return None;
    }
    if strength == Strength::Weak && !(v.as_str().len() >= 12 && looks_like_credential(v.as_str()))
    {
        // `auth=ok`, `session=started`, `signature=sha256`.
        return None;
    }
    if unquoted && v.as_str().len() < 3 {
        return None;
    }
    if !equals && unquoted {
        // `arn:aws:secretsmanager:…:secret:name`, `token: none`, `Missing…Token: Missing`.
        if pre == ":" || !looks_like_credential(v.as_str()) {
            return None;
        }
    }
    if is_placeholder(v.as_str()) || is_path(v.as_str()) {
        return None;
    }
    if !names_password(key) && is_name(v.as_str()) {
        // `"secret":"db-credentials"`: the name of a secret, not its value.
        return None;
    }
    Some(Span {
        start: v.start(),
        end: v.end(),
        pem: false,
    })
}

/// Splits a key into lower-case words: `snake_case`, `kebab-case`, `dot.case` and
/// `camelCase` boundaries.
fn key_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c == '_' || c == '-' || c == '.' {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Whether a key names a secret, and how strongly. The last word decides (`DB_PASSWORD`,
/// `MYSQL_ROOT_PASSWORD`, `GITHUB_TOKEN`, `clientSecret`, `api_key`); a key that only
/// mentions a secret (`DB_PASSWORD_FILE`, `api_key_id`, `max_tokens`, `existingSecret`) does
/// not.
fn key_strength(key: &str) -> Option<Strength> {
    if key.to_ascii_lowercase().starts_with("tf_token_") {
        // Terraform's per-host credentials: TF_TOKEN_app_terraform_io.
        return Some(Strength::Strong);
    }
    if key == "connect.sid" {
        return Some(Strength::Weak);
    }
    let list = words()?;
    let mut words = key_words(key);
    while words.len() > 1 && has(&list.neutral_suffixes, &words[words.len() - 1]) {
        words.pop();
    }
    let last = words.last()?.as_str();
    let prev = words.len().checked_sub(2).map(|i| words[i].as_str());
    if prev.is_some_and(|p| has(&list.not_after, p)) {
        // Helm's `existingSecret` (the name of a Kubernetes secret), rates and limits
        // (`requests_per_token`, `max_token`).
        return None;
    }
    if last == "pass" && words.len() == 1 {
        // `pass=3 fail=0`, `--- PASS: TestX`: test results, not `DB_PASS`.
        return None;
    }
    if has(&list.secret, last)
        || list
            .secret_endings
            .iter()
            .any(|e| last.ends_with(e.as_str()) && last != "bypass")
        || ((last == "pwd" || last == "pw") && words.len() > 1)
        || (last == "key" && prev.is_some_and(|p| has(&list.key_qualifiers, p)))
    {
        return Some(Strength::Strong);
    }
    if has(&list.weak, last) || last.ends_with("sessionid") || last.ends_with("sessid") {
        return Some(Strength::Weak);
    }
    None
}

/// Whether a key names a password (for `password 'value'` without a separator).
fn names_password(key: &str) -> bool {
    let words = key_words(key);
    words.last().is_some_and(|w| {
        matches!(w.as_str(), "password" | "passwd" | "passphrase" | "pass")
            || w.ends_with("password")
            || (w == "pwd" && words.len() > 1)
    })
}

/// Whether a value stands for a secret rather than being one: empty, already masked,
/// a template or variable reference, or a word such as `none`.
fn is_placeholder(v: &str) -> bool {
    let t = v.trim();
    if t.is_empty() {
        return true;
    }
    let lower = t.to_ascii_lowercase();
    let Some(list) = words() else {
        return false;
    };
    if has(&list.placeholders, &lower)
        || list
            .placeholder_prefixes
            .iter()
            .any(|p| lower.starts_with(p.as_str()))
    {
        return true;
    }
    // `****`, `xxxx...xxxx`, `•••`, `...`, and partly shown values: `sk-...abcd`,
    // `****1234`, `AKIAXXXXXXXXXXXXXXXX`.
    if t.chars()
        .all(|c| matches!(c, '*' | 'x' | 'X' | '.' | '•' | '#'))
        || t.contains("...")
        || t.contains('…')
        || t.contains("***")
        || (t.len() < 64 && lower.contains("xxxx"))
    {
        return true;
    }
    // A memory address (`session=0x7f8a2c0012a0` in a crash dump).
    if let Some(hex) = lower.strip_prefix("0x") {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return true;
        }
    }
    // `[REDACTED]`, `[FILTERED]`, `<your-api-key>`, `${DB_PASSWORD}`, `{{ .Values.x }}`,
    // `%(password)s`, `%DB_PASSWORD%`, `$DB_PASSWORD`, `$(cat /run/secrets/x)`
    (t.starts_with('[')
        && t.ends_with(']')
        && t[1..t.len() - 1]
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '_' || c == '-'))
        || t.starts_with("[REDACTED")
        || (t.starts_with('<') && t.ends_with('>'))
        || t.starts_with("${")
        || t.starts_with("$(")
        || t.starts_with("{{")
        || t.starts_with("%(")
        || (t.len() > 2 && t.starts_with('%') && t.ends_with('%'))
        || (t.starts_with('$')
            && t.len() > 1
            && t[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// Whether a value is a name (`db-credentials`, `api-keys`, `prod/db`): lower-case letters
/// and separators only, which generated tokens never are.
fn is_name(v: &str) -> bool {
    v.chars().any(|c| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || matches!(c, '-' | '.' | '/' | '_'))
}

/// Whether a value looks like a credential rather than a word: long enough and with a
/// digit, a symbol, or a capital letter after the first character.
fn looks_like_credential(v: &str) -> bool {
    if v.len() < 6 {
        return false;
    }
    let digit = v.chars().any(|c| c.is_ascii_digit());
    let symbol = v.chars().any(|c| !c.is_ascii_alphanumeric());
    let inner_upper = v.chars().skip(1).any(|c| c.is_ascii_uppercase());
    let lower = v.chars().any(|c| c.is_ascii_lowercase());
    digit || symbol || (inner_upper && lower)
}

/// Whether a value is an authentication scheme name (what is left of `Authorization:
/// Bearer [REDACTED]` for a rule to match on a second pass).
fn is_auth_scheme(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "bearer" | "basic" | "token" | "bot" | "digest" | "negotiate" | "aws4-hmac-sha256"
    )
}

/// Whether a value is a file path (`GOOGLE_APPLICATION_CREDENTIALS=/var/secrets/key.json`,
/// `--from-file=password=./password.txt`, sudo's `PWD=/home/alice`): where a secret is kept,
/// not the secret. A base64 secret may start with `/` too, but has capitals, `+` or `=`.
fn is_path(v: &str) -> bool {
    let rest = ["./", "../", "~/", "/", "@"]
        .iter()
        .find_map(|p| v.strip_prefix(p));
    let Some(rest) = rest else { return false };
    if v.contains(['+', '=']) {
        return false;
    }
    let lower = rest.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '/' | '-' | '@')
    });
    let extension = rest.rsplit_once('.').is_some_and(|(_, ext)| {
        (2..=5).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_lowercase())
    });
    lower || extension
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in rules plus one configured pattern, compiled once for all tests.
    static REDACTOR: LazyLock<Redactor> =
        LazyLock::new(|| Redactor::new(&["corp-[0-9]{6}".into()]).unwrap());

    fn r(s: &str) -> String {
        REDACTOR.redact(s).into_owned()
    }

    #[test]
    fn the_rule_file_is_whole() {
        let file = BUILTIN.as_ref().expect("config/redaction.toml parses");
        assert!(file.rule.len() >= 100, "{} rules", file.rule.len());
        Redactor::new(&[]).expect("every built-in rule compiles");
        // A configured pattern's kind cannot be written in the file, nor an unknown key.
        let extra = DEFAULT_RULES.replacen("kind = \"token\"", "kind = \"extra\"", 1);
        assert!(toml::from_str::<RuleFile>(&extra).is_err());
        let unknown = DEFAULT_RULES.replacen("[[rule]]\n", "[[rule]]\nweight = 2\n", 1);
        assert!(toml::from_str::<RuleFile>(&unknown).is_err());
    }

    #[test]
    fn masks_known_secret_shapes() {
        let cases = [
            ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "wJalrXUtnFEMI",
            ),
            ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
            (
                "curl -H 'Authorization: Basic dXNlcjpwYXNz'",
                "dXNlcjpwYXNz",
            ),
            ("connecting to postgres://app:s3cr3t@db:5432/x", "s3cr3t"),
            ("login password=hunter2 user=bob", "hunter2"),
            (r#"{"token": "tok_live_123", "n": 1}"#, "tok_live_123"),
            ("api_key: 0123456789abcdef", "0123456789abcdef"),
            ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890"),
            ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abc"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijkl",
                "eyJzdWIi",
            ),
            ("employee corp-123456 fired", "corp-123456"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "MIIEow",
            ),
        ];
        for (input, secret) in cases {
            let out = r(input);
            assert!(!out.contains(secret), "{input:?} -> {out:?}");
            assert!(out.contains("REDACTED"), "{input:?} -> {out:?}");
        }
    }

    #[test]
    fn leaves_crash_lines_alone() {
        for line in [
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
            "Out of memory: Killed process 1234 (node) total-vm:1000kB, anon-rss:900kB",
            "java.lang.OutOfMemoryError: Java heap space",
            "max_tokens=512 requested",
            "token expired for user 42",
        ] {
            assert_eq!(r(line), line);
        }
    }

    #[test]
    fn bad_extra_pattern_names_its_index() {
        let e = Redactor::new(&["ok".into(), "(".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("alerts.redact_patterns[1]"), "{e}");
    }

    #[test]
    fn masks_environment_names_with_any_prefix() {
        for (line, secret) in [
            ("DB_PASSWORD=s3cr3t-value", "s3cr3t-value"),
            ("MYSQL_ROOT_PASSWORD=rootpw123", "rootpw123"),
            ("GITHUB_TOKEN=abcdef123456", "abcdef123456"),
            ("export PGPASSWORD=hunter2", "hunter2"),
            ("DJANGO_SECRET_KEY=+ab#c&d(e=f", "+ab#c&d(e=f"),
            ("STRIPE_API_KEY=whatever99", "whatever99"),
            ("TF_TOKEN_app_terraform_io=abc123def456", "abc123def456"),
        ] {
            let out = r(line);
            assert!(!out.contains(secret), "{line:?} -> {out:?}");
            assert!(out.contains("[REDACTED]"), "{line:?} -> {out:?}");
        }
        // The label stays readable.
        assert_eq!(r("DB_PASSWORD=s3cr3t"), "DB_PASSWORD=[REDACTED]");
    }

    #[test]
    fn masks_whole_quoted_values() {
        assert_eq!(r(r#"PASSWORD="hunter 2""#), r#"PASSWORD="[REDACTED]""#);
        assert_eq!(
            r("smtp_password = 'Mail P@ss 6430'"),
            "smtp_password = '[REDACTED]'"
        );
        assert_eq!(
            r(r#"{"passphrase":"blue sky green","host":"db"}"#),
            r#"{"passphrase":"[REDACTED]","host":"db"}"#
        );
        assert_eq!(
            r("login failed with password 'Lxdy bj01'"),
            "login failed with password '[REDACTED]'"
        );
    }

    #[test]
    fn masks_private_keys_over_several_lines() {
        let red = Redactor::default();
        let lines = [
            "deploy: writing SSH_PRIVATE_KEY: -----BEGIN OPENSSH PRIVATE KEY-----",
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
            "c2gtZWQyNTUxOQAAACAuHDYu",
            "-----END OPENSSH PRIVATE KEY-----",
            "next event",
        ];
        let out = red.redact_lines(&lines);
        assert!(out[0].contains(PEM_BODY_MASK), "{out:?}");
        assert_eq!(out[1], PEM_BODY_MASK);
        assert_eq!(out[2], PEM_BODY_MASK);
        assert_eq!(out[4], "next event");
        assert_eq!(red.redact_lines(&out), out, "idempotent");
    }

    #[test]
    fn leaves_placeholders_and_look_alikes_alone() {
        for line in [
            "password: ${DB_PASSWORD}",
            "api_key=<your-api-key>",
            "password=******** (hidden)",
            r#"{"password"=>"[FILTERED]"}"#,
            "DATABASE_URL=postgres://app:****@db:5432/app",
            "DB_PASSWORD_FILE=/run/secrets/db_password",
            "TOKEN_TTL_SECONDS=3600",
            "api_key_id=38f3facd-cf29-4897-a412-8d9e25f20a4e",
            "--set secrets.existingSecret=api-keys",
            "--token flag is deprecated, use --token-file",
            "MissingAuthenticationToken: Missing Authentication Token",
            "INFO auth: cache key=4efae04136f787aa95fa12d12d65b0b77d321b673294eb561675a1d72dd7bb67",
            "Authorization: Basic realm=\"registry\"",
            "commit af6a39abb2f7b49961d6ec0b2df6b02222f586d4",
            "segmentation violation code=0x1 addr=0x55f371480151 pc=0x00007f1eb3bdf403",
        ] {
            assert_eq!(r(line), line);
        }
    }

    #[test]
    fn masks_vendor_token_prefixes() {
        for token in [
            "ghp_Zq8mK2pL9xW4vN7tY6uI0oP3aS5dF6gH7jK8",
            "github_pat_11ABCDEFG0Zq8mK2pL9xW4_vN7tY6uI0oP3aS5dF6gH7jK8lZ9xC0vB1nM2",
            "glpat-Zq8mK2pL9xW4vN7tY6uI",
            "xoxb-123456789012-1234567890123-Zq8mK2pL9xW4vN7tY6uI0oP3",
            "sk_live_Zq8mK2pL9xW4vN7tY6uI0oP3",
            "rk_test_Zq8mK2pL9xW4vN7tY6uI0oP3",
            "sk-proj-Zq8mK2pL9xW4vN7tY6uI0oP3aS5dF6gH7jK8",
            "sk-ant-api03-Zq8mK2pL9xW4vN7tY6uI0oP3aS5dF6gH7jK8lZ9xC0v-AA",
            "npm_Zq8mK2pL9xW4vN7tY6uI0oP3aS5dF6gH7jK8",
            "pypi-AgEIcHlwaS5vcmcCJGZxOG1LMnBMOXhXNHZON3RZNnVJMG9QM2FTNWRGNmdIN2pLOGw",
            "hvs.CAESIZq8mK2pL9xW4vN7tY6uI0oP3aS5dF6gH",
            "AKIAZQ8MK2PL9XW4VN7T",
            "AIzaSyZq8mK2pL9xW4vN7tY6uI0oP3aS5dF6gH7",
            "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",
            "SK7f3a9c2e1b4d6f8a0c2e4f6a8b0d2f4a",
            "dckr_pat_Zq8mK2pL9xW4vN7tY6uI0oP3aS5",
        ] {
            let out = r(&format!("using {token} now"));
            assert_eq!(out, "using [REDACTED] now", "{token}");
        }
    }

    #[test]
    fn masks_connection_strings_query_parameters_and_cookies() {
        for (line, want) in [
            (
                "mongodb+srv://app:Monkey%21406@cluster0.mongodb.net/db",
                "mongodb+srv://app:[REDACTED]@cluster0.mongodb.net/db",
            ),
            (
                "redis://:Zq8mK2pL@redis:6379/0",
                "redis://:[REDACTED]@redis:6379/0",
            ),
            (
                "Server=db;User ID=sa;Password=Zq8m K2pL;Encrypt=True",
                "Server=db;User ID=sa;Password=[REDACTED];Encrypt=True",
            ),
            (
                "GET /cb?code=Zq8mK2pL9xW4vN7t&state=af0ifjsldkj",
                "GET /cb?code=[REDACTED]&state=af0ifjsldkj",
            ),
            (
                "https://x.blob.core.windows.net/c?sv=2022-11-02&sig=Gn3%2FWOh2stz%3D",
                "https://x.blob.core.windows.net/c?sv=2022-11-02&sig=[REDACTED]",
            ),
            (
                "s3?X-Amz-Security-Token=IQoJb3JpZ2luX2Vj&X-Amz-Signature=5ebe9c03595839d2",
                "s3?X-Amz-Security-Token=[REDACTED]&X-Amz-Signature=[REDACTED]",
            ),
            (
                "Cookie: _gitlab_session=2f2cca4efce52ecd7549262ea4e61c9c; lang=en",
                "Cookie: _gitlab_session=[REDACTED]; lang=en",
            ),
            (
                "<password>Zq8mK2pL9x</password>",
                "<password>[REDACTED]</password>",
            ),
            (
                "map[Authorization:[Bearer Zq8mK2pL9xW4vN7t]]",
                "map[Authorization:[Bearer [REDACTED] ]]",
            ),
        ] {
            assert_eq!(r(line), want);
        }
    }

    #[test]
    fn masking_is_idempotent() {
        for line in [
            "DB_PASSWORD=s3cr3t token=abc123XYZ",
            "Authorization: Bearer abc.def-ghi",
            "Authorization: Negotiate YIIBhwYGKwYBBQUC",
            "https://user:pa55@host/x?access_token=abcdef123&x=1",
            r#"{"client_secret":"GcN7Q~YJ9ZR._MAlQGK6kJ7wxMEkOUoQ3W3b4hWi"}"#,
            "GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "key=-----BEGIN RSA PRIVATE KEY-----",
        ] {
            let once = r(line);
            let twice = r(&once);
            assert_eq!(once, twice, "{line:?}");
            assert!(!once.contains("[REDACTED]]") && !once.contains("[[REDACTED"));
        }
    }

    #[test]
    fn key_blocks_over_several_lines_are_masked_and_unchanged_lines_borrowed() {
        let r = Redactor::default();
        let lines = [
            "starting",
            "-----BEGIN RSA PRIVATE KEY-----",
            "MIIEowIBAAKCAQEAx9c0ZpXr",
            "-----END RSA PRIVATE KEY-----",
            "done",
        ];
        let out = r.redact_lines(&lines);
        assert!(matches!(out[0], Cow::Borrowed("starting")));
        assert!(matches!(out[4], Cow::Borrowed("done")));
        assert!(
            matches!(out[2], Cow::Owned(_)),
            "a masked line is owned: {:?}",
            out[2]
        );
        assert!(!out.iter().any(|l| l.contains("MIIEow")), "{out:?}");
    }
}
