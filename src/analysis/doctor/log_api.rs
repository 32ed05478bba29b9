//! The log API backends' checks (Splunk, Loki): the server answers with the credentials, the
//! query finds the sampled instances' events, and last words come back.

use super::*;

/// A log API backend (`splunk`, `loki`) could not even be set up (bad settings, an unreadable
/// token file): its checks fail with the reason.
pub fn log_api_not_configured(backend: &str, message: &str) -> Vec<Check> {
    vec![
        Check::fail(
            format!("{backend}.connection"),
            Failure::Config,
            message.to_string(),
            format!("fix [sources.logs.{backend}] (`epitaph config check` lists every problem)"),
        ),
        Check::skip(
            format!("{backend}.checks"),
            "not checked: the API, what the configuration names, and last words need a working backend",
        ),
    ]
}

/// The checks of a log API, in order: `<backend>.connection` (the API answers and takes the
/// credentials), `<backend>.scope` (the index, the labels and fixed label values the
/// configuration names exist), `<backend>.last_words` (the sampled instances have events, the
/// way a scan looks for them).
pub fn log_api_checks(p: &LogApiProbe) -> Vec<Check> {
    let b = p.backend.as_str();
    let key = p.key.as_str();
    let id = |what: &str| format!("{b}.{what}");
    let mut out = Vec::new();
    match &p.connection {
        Err(e) if !e.answered => {
            out.push(Check::fail(
                id("connection"),
                Failure::Unreachable,
                format!("{}: no answer: {}", p.url, e.message),
                format!("check {key}.url (and {key}.ca_file for a private CA), the network, and that the server is up"),
            ));
            out.push(Check::skip(
                id("checks"),
                format!(
                    "not checked: what {key} names, and last words (the API could not be reached)"
                ),
            ));
            return out;
        }
        Err(e) if matches!(e.code.as_deref(), Some("401" | "403")) => {
            out.push(Check::fail(
                id("connection"),
                Failure::Config,
                format!("{}: the credentials were refused: {}", p.url, e.message),
                match b {
                    "splunk" => format!("check {key}.token (or token_file / token_env) and {key}.auth_scheme (bearer for authentication tokens, splunk for session keys)"),
                    _ => format!("check {key}.username / password or bearer_token, and {key}.tenant_id (X-Scope-OrgID)"),
                },
            ));
            return out;
        }
        Err(e) if e.code.as_deref() == Some("404") => {
            out.push(Check::fail(
                id("connection"),
                Failure::Config,
                format!("{}: no {b} API there: {}", p.url, e.message),
                format!("set {key}.url to the API's base URL"),
            ));
            return out;
        }
        Err(e) => {
            out.push(Check::fail(
                id("connection"),
                Failure::Unreachable,
                format!("{}: {}", p.url, e.message),
                "retry; if it persists, check the server's health",
            ));
            return out;
        }
        Ok(said) => out.push(Check::pass(
            id("connection"),
            format!("{} answers and takes the credentials ({said})", p.url),
        )),
    }
    let missing: Vec<String> = p
        .scopes
        .iter()
        .filter(|s| s.exists == Ok(false))
        .map(|s| {
            let (listed, nearest) = similar_names(&s.name, &s.others.items);
            format!(
                "{} ({}) does not exist{}; there: {}",
                s.what,
                s.key,
                did_you_mean(&nearest),
                list(&listed, s.others.truncated)
            )
        })
        .collect();
    let unlisted: Vec<String> = p
        .scopes
        .iter()
        .filter_map(|s| {
            s.exists
                .as_ref()
                .err()
                .map(|e| format!("{}: {}", s.what, e.message))
        })
        .collect();
    let scope_keys: BTreeSet<&str> = p.scopes.iter().map(|s| s.key.as_str()).collect();
    let scope_keys = scope_keys.into_iter().collect::<Vec<_>>().join(", ");
    if !missing.is_empty() {
        out.push(Check::fail(
            id("scope"),
            Failure::Config,
            missing.join("; "),
            format!("fix {scope_keys}"),
        ));
    } else if !unlisted.is_empty() {
        out.push(Check::warn(
            id("scope"),
            format!("could not be checked: {}", unlisted.join("; ")),
            "the credentials may not list them; the last-words check below still runs",
        ));
    } else if !p.scopes.is_empty() {
        out.push(Check::pass(
            id("scope"),
            format!(
                "{} exist{}",
                p.scopes
                    .iter()
                    .map(|s| s.what.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if p.scopes.len() == 1 { "s" } else { "" }
            ),
        ));
    }
    out.push(log_api_last_words(p));
    out
}

fn log_api_last_words(p: &LogApiProbe) -> Check {
    let b = p.backend.as_str();
    let key = p.key.as_str();
    let check_id = format!("{b}.last_words");
    let filter_key = match b {
        "splunk" => format!("{key}.instance_filter"),
        _ => format!("{key}.selector"),
    };
    if p.lookups.is_empty() {
        return Check::skip(
            check_id,
            "not checked: no terminated instance in the window to look last words up for",
        );
    }
    if let Some(e) = p.lookups.iter().find_map(|l| l.result.as_ref().err()) {
        return Check::fail(
            check_id,
            // Rejected (400) or failed in the answer (200 with an error): the query; anything
            // else is the server's.
            if matches!(e.code.as_deref(), Some("400" | "200")) {
                Failure::Config
            } else {
                Failure::Unreachable
            },
            format!("the last-words query failed: {}", e.message),
            format!("check {filter_key} (the query is what a scan sends), or the server's health"),
        );
    }
    let mut found = Vec::new();
    let mut empty = Vec::new();
    let mut unmapped = Vec::new();
    for l in &p.lookups {
        match &l.result {
            Ok(ApiLookupResult::Events(n)) => found.push(format!("{} ({n} lines)", l.instance_id)),
            Ok(ApiLookupResult::NoEvents) => empty.push(l),
            Ok(ApiLookupResult::Unmapped(why)) => unmapped.push(why.clone()),
            Err(_) => {}
        }
    }
    let sampled = p.lookups.len();
    if !unmapped.is_empty() && found.is_empty() && empty.is_empty() {
        return Check::fail(
            check_id,
            Failure::Config,
            format!("none of the {sampled} sampled instances can be looked up: {}", unmapped[0]),
            format!("add `aws ec2 describe-instances` output to sources.activities.inventory (private DNS names and IPs), or name the instance by {{instance_id}} in {filter_key}"),
        );
    }
    let unmapped_note = if unmapped.is_empty() {
        String::new()
    } else {
        format!("; {} could not be mapped ({})", unmapped.len(), unmapped[0])
    };
    if !found.is_empty() {
        let detail = format!(
            "{} of the {sampled} most recent terminated instances have last words: {}{unmapped_note}",
            found.len(),
            found.join(", ")
        );
        return if unmapped.is_empty() && empty.is_empty() {
            Check::pass(check_id, detail)
        } else {
            Check::warn(
                check_id,
                format!(
                    "{detail}; none for {}",
                    empty
                        .iter()
                        .map(|l| l.instance_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "an instance may die before its agent ships anything; if many do, check the agent",
            )
        };
    }
    let looked_for = empty
        .first()
        .map(|l| l.looked_for.clone())
        .unwrap_or_default();
    let values = p
        .instance_values
        .as_ref()
        .map(|v| {
            let wanted = empty.first().map(|l| l.instance_id.as_str()).unwrap_or("");
            let (listed, _) = similar_names(wanted, &v.items);
            format!(
                "; the instance label holds values such as {}",
                list(&listed, v.truncated)
            )
        })
        .unwrap_or_default();
    let detail = format!(
        "none of the {} most recent terminated instances has events for what a scan asks: {looked_for}{values}{unmapped_note}",
        empty.len()
    );
    let fix = format!("check {filter_key}: the field or label that names the instance, and whether it holds the id, the DNS name or the IP");
    if empty.len() >= MIN_SAMPLES_FOR_STREAM_FAIL {
        Check::fail(check_id, Failure::Config, detail, fix)
    } else {
        Check::warn(check_id, detail, fix)
    }
}
