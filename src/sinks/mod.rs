//! Where results go: report renderers (table, Markdown, JSON, HTML) and alerts — the alert
//! message and its redaction, the Slack Block Kit and generic JSON webhook bodies, and the
//! outbox deliverer.

pub mod alert;
pub mod bundle;
pub mod deliver;
pub mod heap;
pub mod html;
pub mod redact;
pub mod report;
pub mod scan_report;
pub mod slack;
