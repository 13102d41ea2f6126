//! Logging into the platform's ingestion log, with the tenant, app and job attached by the host.

use crate::__private::bindings::mysimbdp::ingest::log::{self as host, Level};

/// Write one debug line.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Write one info line.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Write one warning.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Write one error line.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}
