//! `AppError`: how an app says "this input is bad" or "try again later".

use crate::__private::bindings::mysimbdp::ingest::types;
use std::fmt;

/// Why an app could not handle its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppError {
    /// The input is bad and will never succeed: the platform quarantines the file or
    /// dead-letters the message with this reason, and never retries it.
    Reject(String),
    /// A transient failure: the platform retries later, a bounded number of times.
    Retry(String),
}

impl AppError {
    /// Refuse the input for good, with a reason a person can act on.
    pub fn reject(reason: impl fmt::Display) -> Self {
        Self::Reject(reason.to_string())
    }

    /// Ask the platform to retry later.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Self::Retry(reason.to_string())
    }

    pub(crate) fn into_wit(self) -> types::AppError {
        match self {
            Self::Reject(reason) => types::AppError::Reject(reason),
            Self::Retry(reason) => types::AppError::Retry(reason),
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reject(reason) => write!(f, "rejected: {reason}"),
            Self::Retry(reason) => write!(f, "retry: {reason}"),
        }
    }
}

impl std::error::Error for AppError {}

/// Reading the staged file only fails if the data is not what the app expects (for
/// example invalid UTF-8): retrying the same bytes cannot help.
impl From<std::io::Error> for AppError {
    fn from(error: std::io::Error) -> Self {
        Self::reject(format!("reading input: {error}"))
    }
}

/// Malformed JSON is bad input.
impl From<serde_json::Error> for AppError {
    fn from(error: serde_json::Error) -> Self {
        Self::reject(format!("JSON: {error}"))
    }
}

/// A CSV error that escapes the app (rather than being counted as a bad row) rejects the file.
impl From<csv::Error> for AppError {
    fn from(error: csv::Error) -> Self {
        Self::reject(format!("CSV: {error}"))
    }
}
