//! Masks secrets in text before it leaves the process (alerts, HTML report, API): AWS keys,
//! bearer and basic credentials, passwords in URLs, `password=`/`token=`-style pairs, common
//! vendor tokens and JWTs, plus patterns the user configures.

use std::borrow::Cow;

use regex::{Regex, RegexSet};

use crate::error::{Error, Result};

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Built-in patterns: (name, regex, replacement). Replacements keep the label so a reader
/// still sees *what* was there.
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
        "[REDACTED PRIVATE KEY]",
    ),
    (
        "aws_access_key_id",
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
        "[REDACTED]",
    ),
    (
        "aws_secret_access_key",
        r#"(?i)(aws_secret_access_key|secret_access_key|secretaccesskey)(["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}"#,
        "${1}${2}[REDACTED]",
    ),
    (
        "authorization_header",
        r"(?i)\b(authorization\s*[:=]\s*)(?:(bearer|basic|token|digest)\s+)?[^\s,;]+",
        "${1}${2} [REDACTED]",
    ),
    (
        "bearer",
        r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*",
        "Bearer [REDACTED]",
    ),
    (
        "url_password",
        r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+):[^@\s/]+@",
        "${1}:[REDACTED]@",
    ),
    (
        "secret_pair",
        r#"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|session[_-]?token)(["']?\s*[=:]\s*["']?)([^\s&"',;}\]]+)"#,
        "${1}${2}[REDACTED]",
    ),
    (
        "slack_token",
        r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
        "[REDACTED]",
    ),
    (
        "github_token",
        r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
        "[REDACTED]",
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        "[REDACTED]",
    ),
];

/// What a line inside a private-key block is replaced with.
const PEM_BODY_MASK: &str = "[REDACTED PRIVATE KEY]";

static PEM_BEGIN: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----").expect("valid regex")
});
static PEM_END: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----").expect("valid regex")
});

/// A compiled set of masking rules.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<(Regex, String)>,
    /// All rules in one automaton: most lines hold no secret and are passed over in one scan.
    any: RegexSet,
}

impl Redactor {
    /// The built-in rules plus `extra` regexes (whole matches masked). Errors name the
    /// offending item as `alerts.redact_patterns[i]`.
    pub fn new(extra: &[String]) -> Result<Redactor> {
        let mut rules = Vec::with_capacity(BUILTIN.len() + extra.len());
        for (name, re, rep) in BUILTIN {
            let re = Regex::new(re)
                .map_err(|e| Error::Config(vec![format!("built-in redaction {name}: {e}")]))?;
            rules.push((re, rep.to_string()));
        }
        for (i, re) in extra.iter().enumerate() {
            let re = Regex::new(re)
                .map_err(|e| Error::Config(vec![format!("alerts.redact_patterns[{i}]: {e}")]))?;
            rules.push((re, MASK.to_string()));
        }
        let any = RegexSet::new(rules.iter().map(|(r, _)| r.as_str()))
            .map_err(|e| Error::Config(vec![format!("alerts.redact_patterns: {e}")]))?;
        Ok(Redactor { rules, any })
    }

    /// Masks a sequence of lines (an instance's last words, one event per line) where a
    /// secret may span lines: every line inside a private-key block (from its `BEGIN … PRIVATE
    /// KEY` line to its `END` line) is masked whole, the rest line by line.
    pub fn redact_lines<S: AsRef<str>>(&self, lines: &[S]) -> Vec<String> {
        let mut in_key = false;
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            let line = line.as_ref();
            if in_key {
                if PEM_END.is_match(line) {
                    in_key = false;
                    out.push(self.redact(line).into_owned());
                } else {
                    out.push(PEM_BODY_MASK.to_string());
                }
                continue;
            }
            let masked = self.redact(line).into_owned();
            // A BEGIN line whose END is not on the same line opens a block.
            if let Some(m) = PEM_BEGIN.find(line) {
                in_key = !PEM_END.is_match(&line[m.end()..]);
            }
            out.push(masked);
        }
        out
    }

    /// `text` with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let hits = self.any.matches(text);
        if !hits.matched_any() {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        for (i, (re, rep)) in self.rules.iter().enumerate() {
            // A rule that did not match the original can match after an earlier mask only if
            // the mask created it; masks contain no secrets, so checking the set is enough.
            if hits.matched(i) && re.is_match(&out) {
                out = Cow::Owned(re.replace_all(&out, rep.as_str()).into_owned());
            }
        }
        out
    }
}

impl Default for Redactor {
    fn default() -> Self {
        // The built-in patterns are tested to compile; this cannot fail.
        Redactor::new(&[]).unwrap_or(Redactor {
            rules: Vec::new(),
            any: RegexSet::empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Redactor::new(&["corp-[0-9]{6}".into()])
            .unwrap()
            .redact(s)
            .into_owned()
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
}
