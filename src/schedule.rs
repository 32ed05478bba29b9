//! The scan schedule of `epitaph serve`: a cron expression (5 fields, minute first, or 6 with
//! seconds first), evaluated in UTC.

use chrono::{DateTime, Utc};

/// A parsed cron schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    text: String,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        if !(fields == 5 || fields == 6) {
            return Err(format!(
                "`{text}` has {fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let cron = croner::Cron::new(text)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("`{text}`: {e}"))?;
        Ok(Schedule {
            cron,
            text: text.to_string(),
        })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            s.next_after(t("2026-01-01T10:07:00Z")),
            Some(t("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-01-01T10:15:00Z")),
            Some(t("2026-01-01T10:30:00Z"))
        );
        let s = Schedule::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            s.next_after(t("2026-01-01T10:00:01Z")),
            Some(t("2026-01-01T10:00:05Z"))
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        assert!(Schedule::parse("* * *").unwrap_err().contains("3 fields"));
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("a b c d e").is_err());
    }
}
