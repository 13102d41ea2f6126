//! The host's own state: readiness.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether this host can serve: every backing service its roles need, each with whether it
/// answered. The same shape with 200 (all answered) and 503 (some did not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// True when every service below answered.
    pub ready: bool,
    /// The services this host needs, in a fixed order.
    pub services: Vec<ServiceCheck>,
}

/// One backing service as the last probe found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceCheck {
    /// `mongodb` (the platform database), `redis`, `rabbitmq` or `etcd`.
    pub service: String,
    /// What this host needs it for, e.g. `api, batch workers`.
    pub needed_for: String,
    /// Whether it answered within the probe's time bound.
    pub ok: bool,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the probe took, in milliseconds.
    pub millis: u64,
}
