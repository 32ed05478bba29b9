//! Library errors. Every variant says what went wrong and where (file:line, config key, source);
//! the CLI maps [`Error::is_bad_input`] to exit code 2 and everything else to 1.

use std::path::Path;

/// Result with epitaph's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input the user gave us: `location` is `file:line[:column]` or a config key.
    #[error("{location}: {message}")]
    Input { location: String, message: String },

    /// One or more configuration problems, each naming its key.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),

    /// A data source failed (network, API error, unreadable file) for a reason other than bad
    /// content.
    #[error("{source_name}: {message}")]
    Source {
        source_name: String,
        message: String,
    },

    /// The configuration asks for something this build does not do yet.
    #[error("not implemented: {0}")]
    NotImplemented(String),

    #[error("state store: {0}")]
    Store(String),

    /// An instance id the sources know nothing of: no termination in the activity history,
    /// not in any group's inventory now, no memory series. Not "still running".
    #[error("{0}: unknown instance — no termination in the activity history, not in any group's inventory now, and no memory series (another account or region, a typo, or older than the history)")]
    UnknownInstance(String),

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn input(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            location: location.into(),
            message: message.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn source(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Source {
            source_name: source_name.into(),
            message: message.into(),
        }
    }

    /// Bad input or configuration (exit code 2) rather than a failure while running (1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Input { .. }
                | Error::Config(_)
                | Error::NotImplemented(_)
                | Error::UnknownInstance(_)
        )
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Store(format!("migration failed: {e}"))
    }
}
