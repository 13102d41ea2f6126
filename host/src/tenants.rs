//! Tenants as the operator manages them: creation under a checked id with a validated
//! profile and a fresh token, deletion with the tenant's streams and broker vhost, token
//! rotation, suspension and profile changes. The HTTP handlers in `api::admin` parse the
//! request and call these.

use crate::config::SandboxLimits;
use crate::platform::{Platform, StoreError, TenantRecord, TenantStatus};
use crate::profile::{Profile, ProfileError};
use crate::stream::Broker;
use crate::{names, tokens};

/// Why a tenant operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The id breaks the naming rule.
    #[error("{0}")]
    InvalidId(String),
    /// The profile is refused, with the field.
    #[error("{0}")]
    InvalidProfile(ProfileError),
    /// The platform database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The host could not do its own part (the OS's random source for a token).
    #[error("{0:#}")]
    Host(#[source] anyhow::Error),
}

/// A tenant and its new token (shown once: only its hash is kept).
#[derive(Debug, Clone)]
pub struct WithToken {
    /// The tenant.
    pub tenant: TenantRecord,
    /// Its token.
    pub token: String,
}

/// Refuses an id that breaks the naming rule.
pub fn check_id(id: &str) -> Result<(), TenantError> {
    names::tenant_id(id).map_err(|e| TenantError::InvalidId(e.to_string()))
}

/// Creates tenant `id` with `profile` (checked against the operator's `ceiling`) and a fresh
/// token.
pub async fn create(
    platform: &Platform,
    ceiling: &SandboxLimits,
    id: &str,
    profile: Profile,
) -> Result<WithToken, TenantError> {
    check_id(id)?;
    profile
        .validate(ceiling)
        .map_err(TenantError::InvalidProfile)?;
    let token = tokens::generate().map_err(TenantError::Host)?;
    let tenant = platform
        .create_tenant(id, profile, tokens::hash(&token))
        .await?;
    tracing::info!(tenant = %tenant.id, "tenant created");
    Ok(WithToken { tenant, token })
}

/// Deletes tenant `id` and its streams; its broker vhost and user go too, or a warning says
/// to remove them by hand (the tenant is gone either way).
pub async fn delete(platform: &Platform, broker: &Broker, id: &str) -> Result<(), TenantError> {
    platform.delete_tenant(id).await?;
    platform.delete_tenant_streams(id).await?;
    if let Err(e) = broker.delete_tenant(id).await {
        tracing::warn!(tenant = %id, error = %format!("{e:#}"), "could not remove the tenant's broker vhost and user; remove them by hand");
    }
    tracing::info!(tenant = %id, "tenant deleted");
    Ok(())
}

/// Suspends (with an optional reason) or resumes tenant `id`.
pub async fn set_status(
    platform: &Platform,
    id: &str,
    status: TenantStatus,
    reason: Option<String>,
) -> Result<TenantRecord, TenantError> {
    let tenant = platform.set_tenant_status(id, status, reason).await?;
    match status {
        TenantStatus::Suspended => tracing::info!(tenant = %id, "tenant suspended"),
        TenantStatus::Active => tracing::info!(tenant = %id, "tenant resumed"),
    }
    Ok(tenant)
}

/// Issues tenant `id` a new token; the old one stops working.
pub async fn rotate_token(platform: &Platform, id: &str) -> Result<WithToken, TenantError> {
    let token = tokens::generate().map_err(TenantError::Host)?;
    let tenant = platform.replace_token(id, tokens::hash(&token)).await?;
    tracing::info!(tenant = %id, "tenant token rotated");
    Ok(WithToken { tenant, token })
}

/// Gives tenant `id` a new profile version, checked against the operator's `ceiling`.
pub async fn set_profile(
    platform: &Platform,
    ceiling: &SandboxLimits,
    id: &str,
    profile: Profile,
) -> Result<TenantRecord, TenantError> {
    profile
        .validate(ceiling)
        .map_err(TenantError::InvalidProfile)?;
    let tenant = platform.set_profile(id, profile).await?;
    tracing::info!(tenant = %id, version = tenant.profile_version, "tenant profile set");
    Ok(tenant)
}
