//! The test support shared by the host's integration tests and benchmarks and the end-to-end
//! tests: where the services listen, a `serve` in the test process or as a real process, the
//! `mysimbdp` command line, names that follow the host's own rules, cleanup and polling.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Support code: its functions are documented by their names and one-line comments.
#![allow(missing_docs)]

/// Batch uploads as tests drive them.
pub mod batch;
/// A headless Chromium driven over WebDriver, for the web console's tests.
pub mod browser;
/// Cleanup: what a test leaves in MongoDB and etcd.
pub mod cleanup;
/// The `mysimbdp` binary and its command lines.
pub mod cli;
/// Services a fault test owns: a Redis, etcd or MongoDB it kills and restarts.
pub mod faults;
/// Files the tests use: scratch directories and fixture bytes.
pub mod files;
/// A `serve` inside the test process, and HTTP calls that check every refusal's shape.
pub mod host;
/// Names: unique per run, and the host's own naming rules.
pub mod naming;
/// Polling for a condition instead of sleeping.
pub mod poll;
/// A real `mysimbdp serve` process, as tests and benchmarks start it.
pub mod process;
/// One sandbox runtime per test binary and calls that collect an app's documents.
pub mod sandbox;
/// Where the services started by `scripts/services up` listen, and connections to them.
pub mod services;
/// Streams as tests drive them: creating, publishing, forcing connections closed.
pub mod streams;
/// Certificates of a CA made per test, for the tests about TLS.
pub mod tls;

pub use naming::unique;
pub use services::{AMQP_URL, ETCD_ENDPOINT, MONGODB_URI, MONGODB2_URI, REDIS_URL};

/// What most integration tests use, for one glob import.
pub mod prelude {
    pub use crate::cleanup::{clear_registry, drop_database};
    pub use crate::files::{orders_csv, read, scratch};
    pub use crate::host::{Host, OPERATOR, assert_error_shape, config};
    pub use crate::naming::{database_name, tenant_database, unique};
    pub use crate::poll::{wait_until, within};
    pub use crate::process::{
        Endpoints, Process, peak_rss_mib, spawn_serve, spawn_serve_at, spawn_serve_with,
    };
    pub use crate::services::tenant_collection;
}
