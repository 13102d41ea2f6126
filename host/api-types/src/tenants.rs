//! Tenants, their profiles and the hosts serving them (the operator's side of the API).

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// Whether a tenant may work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Requests are served and work runs.
    Active,
    /// Requests are refused with 403 and work is paused; nothing is deleted.
    Suspended,
}

impl TenantStatus {
    /// The status's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A tenant as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    /// The tenant id.
    pub id: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Why it was suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_reason: Option<String>,
    /// The current profile's version.
    pub profile_version: i64,
    /// The current profile (schema: /v1/schemas/tenant-profile.json).
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
    /// The database its documents land in.
    pub database: String,
    /// When its current token was issued.
    pub token_issued_at: String,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// A tenant with a freshly issued token, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantWithToken {
    /// The tenant.
    pub tenant: TenantView,
    /// Its API token. Only its hash is stored: keep it now, or rotate it later.
    pub token: String,
}

/// The calling tenant, with the limits its apps run under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: TenantView,
    /// Effective sandbox limits of its apps (before each app's own overrides).
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
}

/// One version of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileVersionView {
    /// 1, 2, …
    pub version: i64,
    /// When it was set.
    pub created_at: String,
    /// The profile.
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
}

/// `POST /v1/admin/tenants`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant id: 2-32 of a-z, 0-9 and '-', starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 2, max_length = 32)]
    pub id: String,
    /// Its profile; defaults apply to whatever is left out.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub profile: Option<serde_json::Value>,
}

/// `POST /v1/admin/tenants/{id}/suspend`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suspend {
    /// Why, shown to the tenant in every refusal.
    pub reason: Option<String>,
}

/// A live `serve` process, as registered in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostInfo {
    /// Unique per process: `<hostname>-<pid>-<random>`.
    pub id: String,
    /// What it does: `api`, and `batch` / `stream` when it runs batch workers / stream
    /// consumers.
    pub roles: Vec<String>,
    /// Where its API listens.
    pub address: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// The mysimbdp version it runs.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// The machine's hostname.
    pub hostname: String,
}
