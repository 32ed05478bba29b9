//! The instance placeholders of the log backends' templates — `{instance_id}`, `{private_dns}`,
//! `{private_ip}` — checked when the configuration loads and filled per instance. The private
//! DNS name and IP come from the inventory (`aws ec2 describe-instances` output); an instance
//! whose inventory lacks one a template needs cannot be mapped to its logs, and the error says
//! so (the instance stays pending, named in the scan summary) — it is never an instance
//! without last words.

use crate::sources::LastWordsQuery;

/// The instance id (always known).
pub const INSTANCE_ID: &str = "{instance_id}";
/// The private DNS name (`ip-10-0-1-23.ec2.internal`), from the inventory.
pub const PRIVATE_DNS: &str = "{private_dns}";
/// The private IPv4 address (`10.0.1.23`), from the inventory.
pub const PRIVATE_IP: &str = "{private_ip}";
/// Every placeholder a template may use.
pub const ALL: [&str; 3] = [INSTANCE_ID, PRIVATE_DNS, PRIVATE_IP];

/// The placeholders `template` uses, in order of appearance; an unknown `{name}` (lower-case
/// letters and underscores between braces) is an error naming it. Other braces are text.
pub fn used(template: &str) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            let full = &rest[open..open + close + 2];
            match ALL.iter().find(|p| **p == full) {
                Some(p) => out.push(*p),
                None => {
                    return Err(format!(
                        "unknown placeholder `{full}` (known: {})",
                        ALL.join(", ")
                    ))
                }
            }
            rest = &after[close + 1..];
        } else {
            rest = after;
        }
    }
    Ok(out)
}

/// The value `placeholder` has for the instance, or why it has none.
fn value_of<'q>(placeholder: &str, q: &'q LastWordsQuery) -> Result<&'q str, String> {
    let (value, what) = match placeholder {
        INSTANCE_ID => (Some(q.instance_id.as_str()), "instance id"),
        PRIVATE_DNS => (q.private_dns.as_deref(), "private DNS name"),
        PRIVATE_IP => (q.private_ip.as_deref(), "private IP address"),
        other => return Err(format!("unknown placeholder `{other}`")),
    };
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        format!(
            "{} cannot be mapped to its logs: {placeholder} needs its {what}, which the inventory does not have (add `aws ec2 describe-instances` output to sources.activities.inventory, or name the instance by {INSTANCE_ID})",
            q.instance_id
        )
    })
}

/// `template` with every placeholder replaced by the instance's value as `check` passes it on
/// (a backend refuses values it cannot search for, or escapes them for the template's
/// language — a regex). Errors say which instance and why.
pub fn fill(
    template: &str,
    q: &LastWordsQuery,
    check: impl Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    used(template)?;
    // One pass over the template: a value is never scanned for placeholders itself.
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while !rest.is_empty() {
        match ALL.iter().find(|p| rest.starts_with(**p)) {
            Some(p) => {
                let v = value_of(p, q)?;
                let v = check(v).map_err(|e| format!("{}: {p} = `{v}` {e}", q.instance_id))?;
                out.push_str(&v);
                rest = &rest[p.len()..];
            }
            None => {
                let c = rest.chars().next().unwrap_or_default();
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> LastWordsQuery {
        LastWordsQuery {
            instance_id: "i-0abc".into(),
            private_dns: Some("ip-10-0-1-23.ec2.internal".into()),
            ..Default::default()
        }
    }

    #[test]
    fn templates_name_known_placeholders_only() {
        assert_eq!(
            used("host={private_dns} id={instance_id}").unwrap(),
            [PRIVATE_DNS, INSTANCE_ID]
        );
        assert_eq!(used("a{2}b {}").unwrap(), Vec::<&str>::new());
        let err = used("{instance}").unwrap_err();
        assert!(err.contains("unknown placeholder `{instance}`"), "{err}");
    }

    #[test]
    fn filled_from_the_query_or_unmapped() {
        let ok = |v: &str| Ok(v.to_string());
        assert_eq!(
            fill("{private_dns}/{instance_id}", &q(), ok).unwrap(),
            "ip-10-0-1-23.ec2.internal/i-0abc"
        );
        let err = fill("{private_ip}", &q(), ok).unwrap_err();
        assert!(err.starts_with("i-0abc cannot be mapped"), "{err}");
        assert!(err.contains("describe-instances"), "{err}");
        let tricky = LastWordsQuery {
            instance_id: "{private_dns}".into(),
            ..q()
        };
        assert_eq!(
            fill("{instance_id}", &tricky, ok).unwrap(),
            "{private_dns}",
            "a value is not a template"
        );
        let err = fill("{instance_id}", &q(), |_| Err("is not allowed".into())).unwrap_err();
        assert_eq!(err, "i-0abc: {instance_id} = `i-0abc` is not allowed");
        assert_eq!(
            fill("x-{instance_id}", &q(), |v| Ok(v.to_uppercase())).unwrap(),
            "x-I-0ABC"
        );
    }
}
