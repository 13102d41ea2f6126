//! Names: unique per test run, and derived by the host's own rules so a test never carries
//! a copy of a rule that could drift from the host's.

use std::sync::atomic::{AtomicU64, Ordering};

/// A name no other test run uses: prefix, process id and a counter.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A platform database (and registry prefix, queue namespace) of a test's own.
pub fn database_name() -> String {
    unique("cp").replace('-', "_")
}

/// The database a tenant's documents go to on the shared coredms, by the host's rule.
pub fn tenant_database(tenant: &str) -> String {
    mysimbdp_host::names::tenant_database(tenant)
}
