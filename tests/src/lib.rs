//! Shared settings of the end-to-end tests: where the services started by
//! `scripts/services up` listen, overridable through the environment.

use std::sync::atomic::{AtomicU64, Ordering};

/// Redis, as the services script starts it.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// RabbitMQ with the default guest account.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// MongoDB as the single-node replica set `rs0`.
pub const MONGODB_URI: &str =
    "mongodb://127.0.0.1:27017/?replicaSet=rs0&serverSelectionTimeoutMS=10000";
/// The second MongoDB server (replica set `rs1`): a tenant's dedicated coredms in tests.
pub const MONGODB2_URI: &str =
    "mongodb://127.0.0.1:27018/?replicaSet=rs1&serverSelectionTimeoutMS=10000";
/// etcd's client endpoint.
pub const ETCD_ENDPOINT: &str = "127.0.0.1:2379";

/// A name no other test run uses: prefix, process id and a counter.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
