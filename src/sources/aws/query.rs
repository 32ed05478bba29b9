//! The AWS Query protocol's answer side, shared by the APIs spoken over it by hand (Auto
//! Scaling; EC2 shares the entity decoding): an XML answer read into a small element tree
//! (names without namespaces, text with entities decoded), and the error shape
//! `<ErrorResponse><Error><Code>…</Code><Message>…</Message></Error></ErrorResponse>`.
//! Requests are form bodies (`Action=…&Version=…`), built by each API's module.

use crate::sources::http::HttpFailure;
use crate::sources::probe::CallError;

/// Elements nested deeper than this make an answer unreadable (AWS's answers nest a handful
/// of levels; this only bounds a hostile or broken one).
pub const MAX_DEPTH: usize = 64;

/// The form content type of Query requests.
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// One XML element: its local name, its own text (trimmed, decoded) and its children.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child named `name`, when it has any.
    pub fn text_of(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|c| c.text.clone())
            .filter(|t| !t.is_empty())
    }

    /// The `member` elements of the list child `list` (`<Tags><member>…</member></Tags>`).
    pub fn members<'a>(&'a self, list: &str) -> impl Iterator<Item = &'a Element> + 'a {
        self.child(list)
            .into_iter()
            .flat_map(|l| l.children.iter().filter(|c| c.name == "member"))
    }
}

/// Reads an XML document into its root element.
pub fn parse(xml: &str) -> std::result::Result<Element, String> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    for token in xmlparser::Tokenizer::from(xml) {
        let token = token.map_err(|e| e.to_string())?;
        match token {
            xmlparser::Token::ElementStart { local, .. } => {
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(Element {
                    name: local.as_str().to_string(),
                    ..Default::default()
                });
            }
            xmlparser::Token::Text { text } => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&unescape(text.as_str()));
                }
            }
            xmlparser::Token::Cdata { text, .. } => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(text.as_str());
                }
            }
            xmlparser::Token::ElementEnd { end, .. } => {
                if matches!(end, xmlparser::ElementEnd::Open) {
                    continue;
                }
                let mut done = stack.pop().ok_or("an element closed that was not open")?;
                done.text = done.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            _ => {}
        }
    }
    if !stack.is_empty() {
        let open: Vec<&str> = stack.iter().map(|e| e.name.as_str()).collect();
        return Err(format!("truncated XML (open elements: {})", open.join("/")));
    }
    root.ok_or_else(|| "no XML element in the answer".to_string())
}

/// `(Code, Message)` of a Query error answer (`<ErrorResponse><Error>…`, or EC2's
/// `<Response><Errors><Error>…`).
pub fn parse_error(f: &HttpFailure) -> Option<(String, String)> {
    let root = parse(&f.detail).ok()?;
    let error = root
        .child("Error")
        .or_else(|| root.child("Errors").and_then(|e| e.child("Error")))?;
    Some((
        error.text_of("Code")?,
        error.text_of("Message").unwrap_or_default(),
    ))
}

/// XML's five entities and numeric character references.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..i + end + 2]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// One Query-protocol call on `endpoint`: the answer's XML document, or the failure (an
/// answer that is not XML is an unreadable answer of `action`).
pub async fn call(
    endpoint: &super::signed::Endpoint,
    action: &str,
    body: String,
) -> std::result::Result<Element, CallError> {
    let answer = endpoint
        .post(super::signed::Request {
            action,
            headers: &[("content-type", CONTENT_TYPE)],
            body: body.into_bytes(),
            read_error: parse_error,
        })
        .await?;
    let text = String::from_utf8(answer).map_err(|e| e.to_string());
    read_answer(action, text.and_then(|t| parse(&t)))
}

/// The `…Result` element of an answer (`DescribeAutoScalingGroupsResponse` →
/// `DescribeAutoScalingGroupsResult`).
pub fn result<'a>(root: &'a Element, op: &str) -> std::result::Result<&'a Element, String> {
    if root.name != format!("{op}Response") {
        return Err(format!("expected <{op}Response>, got <{}>", root.name));
    }
    root.child(&format!("{op}Result"))
        .ok_or_else(|| format!("no <{op}Result> in the answer"))
}

/// An answer that could not be read, as a failed call.
pub fn read_answer<T>(
    action: &str,
    r: std::result::Result<T, String>,
) -> std::result::Result<T, CallError> {
    r.map_err(|e| CallError {
        action: action.to_string(),
        code: None,
        answered: true,
        message: format!(
            "{}: unreadable answer: {e}",
            action.split_once(':').map_or(action, |(_, op)| op)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(body: &str) -> HttpFailure {
        HttpFailure {
            status: Some(400),
            detail: body.into(),
            attempts: 1,
            retry_after_too_long: None,
            error_type: None,
        }
    }

    #[test]
    fn a_tree_keeps_names_text_and_order() {
        let root = parse(
            r#"<?xml version="1.0"?><R xmlns="http://x/"><A>one &amp; two</A><L><member>1</member><member><![CDATA[<2>]]></member></L><E/></R>"#,
        )
        .unwrap();
        assert_eq!(root.name, "R");
        assert_eq!(root.text_of("A").as_deref(), Some("one & two"));
        let members: Vec<&str> = root.members("L").map(|m| m.text.as_str()).collect();
        assert_eq!(members, ["1", "<2>"]);
        assert_eq!(root.text_of("E"), None);
        assert!(root.child("E").is_some());
        assert_eq!(root.members("Missing").count(), 0);
        assert!(parse("<R><A></R>").is_err());
        assert!(parse("<R><A>").is_err());
        assert!(parse("not xml <<<").is_err());
        assert!(parse("").is_err());
    }

    /// The documented error shapes: Auto Scaling's `ErrorResponse` and EC2's `Response`.
    #[test]
    fn error_answers_give_code_and_message() {
        let throttled = failure(
            r#"<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>0f1e2d3c</RequestId></ErrorResponse>"#,
        );
        assert_eq!(
            parse_error(&throttled),
            Some(("Throttling".into(), "Rate exceeded".into()))
        );
        let denied = failure(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>ab12</RequestID></Response>"#,
        );
        assert_eq!(parse_error(&denied).unwrap().0, "UnauthorizedOperation");
        assert_eq!(parse_error(&failure("<html>Bad Gateway</html>")), None);
        assert_eq!(parse_error(&failure("upstream connect error")), None);
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            unescape("a &lt;b&gt; &#65;&#x42; &bogus; &"),
            "a <b> AB &bogus; &"
        );
    }
}
