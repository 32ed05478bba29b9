//! Where results go: report renderers (table, Markdown, JSON). Alert sinks (Slack-style
//! webhooks) and the HTML report belong here too.

pub mod report;
