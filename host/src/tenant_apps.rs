//! A tenant's apps as the API drives them: uploads (admitted by the app store, counted and
//! logged), sandbox overrides, activation and rollback, version deletion and dry runs. The
//! HTTP handlers in `api::apps` read the request and call these.

use crate::app_store::{AdmitError, Admitted, AppStore, DryRun, UploadOptions};
use crate::config::SandboxOverrides;
use crate::metrics::Metrics;
use crate::names;
use crate::platform::{AppRecord, Platform, StoreError, TenantRecord, VersionRecord};
use std::collections::BTreeMap;

/// Why an app operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// The app's name breaks the naming rule.
    #[error("{0}")]
    InvalidName(String),
    /// Sandbox overrides above the tenant's limits.
    #[error("{0}")]
    InvalidLimits(String),
    /// A preset the operator does not offer, or above the operator's ceilings.
    #[error("{0}")]
    InvalidPreset(String),
    /// An input over its limit.
    #[error("{0}")]
    TooLarge(String),
    /// No active version to run.
    #[error("{0}")]
    Conflict(String),
    /// The component was refused, or the store failed while admitting or loading it.
    #[error(transparent)]
    Admit(#[from] AdmitError),
    /// The platform database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refuses an app name that breaks the naming rule.
pub fn check_name(name: &str) -> Result<(), AppsError> {
    names::app_name(name).map_err(|e| AppsError::InvalidName(e.to_string()))
}

/// Admits `wasm` as a new version of the tenant's app `name` (created on first upload),
/// under `options` (activation, preset, sample); every upload is counted by outcome.
pub async fn upload(
    apps: &AppStore,
    metrics: &Metrics,
    tenant: &TenantRecord,
    name: &str,
    wasm: &[u8],
    options: UploadOptions<'_>,
) -> Result<Admitted, AppsError> {
    check_name(name)?;
    if let Some(preset) = options.preset {
        apps.check_preset(preset)
            .map_err(AppsError::InvalidPreset)?;
    }
    let admitted = apps.admit(tenant, name, wasm, options).await;
    metrics.app_upload(if admitted.is_ok() {
        "admitted"
    } else {
        "refused"
    });
    let admitted = admitted.inspect_err(|e| {
        tracing::info!(tenant = %tenant.id, app = %name, error = %e, "upload refused");
    })?;
    tracing::info!(
        tenant = %tenant.id, app = %name, version = %admitted.version.digest,
        created = admitted.created, "app version uploaded"
    );
    Ok(admitted)
}

/// Replaces the app's own sandbox limits, each at most the tenant's.
pub async fn set_sandbox(
    apps: &AppStore,
    platform: &Platform,
    tenant: &TenantRecord,
    name: &str,
    sandbox: &SandboxOverrides,
) -> Result<AppRecord, AppsError> {
    apps.check_app_sandbox(tenant, sandbox)
        .map_err(AppsError::InvalidLimits)?;
    Ok(platform.set_app_sandbox(&tenant.id, name, sandbox).await?)
}

/// Deletes the app and all its versions.
pub async fn delete(
    platform: &Platform,
    tenant: &TenantRecord,
    name: &str,
) -> Result<(), AppsError> {
    platform.delete_app(&tenant.id, name).await?;
    tracing::info!(tenant = %tenant.id, app = %name, "app deleted");
    Ok(())
}

/// Deletes a version (by id or unique prefix) that is neither active nor kept for rollback.
pub async fn delete_version(
    platform: &Platform,
    tenant: &TenantRecord,
    name: &str,
    version: &str,
) -> Result<(), AppsError> {
    let version = platform.version(&tenant.id, name, version).await?;
    platform
        .delete_version(&tenant.id, name, &version.digest)
        .await?;
    Ok(())
}

/// Makes a version (by id or unique prefix) the active one; the previous one becomes the
/// rollback target.
pub async fn activate(
    platform: &Platform,
    tenant: &TenantRecord,
    name: &str,
    version: &str,
) -> Result<AppRecord, AppsError> {
    let version = platform.version(&tenant.id, name, version).await?;
    let app = platform.activate(&tenant.id, name, &version.digest).await?;
    tracing::info!(tenant = %tenant.id, app = %name, version = %version.digest, "app version activated");
    Ok(app)
}

/// Re-activates the version that was active before the current one.
pub async fn rollback(
    platform: &Platform,
    tenant: &TenantRecord,
    name: &str,
) -> Result<AppRecord, AppsError> {
    let app = platform.rollback(&tenant.id, name).await?;
    tracing::info!(tenant = %tenant.id, app = %name, version = ?app.active, "app rolled back");
    Ok(app)
}

/// A dry run: what a small input would produce.
pub struct DryRunRequest {
    /// The input: a small file's text (batch app) or messages, one per line (stream app).
    pub input: String,
    /// App parameters.
    pub params: BTreeMap<String, String>,
    /// The version to run (default: the active one).
    pub version: Option<String>,
}

/// Runs the app on a small input (at most `max_kib`) in the production sandbox; nothing is
/// written anywhere. Answers with the version run and what it produced.
pub async fn dry_run(
    apps: &AppStore,
    platform: &Platform,
    max_kib: usize,
    tenant: &TenantRecord,
    name: &str,
    request: DryRunRequest,
) -> Result<(VersionRecord, DryRun), AppsError> {
    if request.input.len() > max_kib * 1024 {
        return Err(AppsError::TooLarge(format!(
            "dry-run input is limited to {max_kib} KiB"
        )));
    }
    let app = platform.app(&tenant.id, name).await?;
    let version = match (request.version, &app.active) {
        (Some(version), _) => version,
        (None, Some(active)) => active.clone(),
        (None, None) => {
            return Err(AppsError::Conflict(format!(
                "app {name:?} has no active version"
            )));
        }
    };
    let version = platform.version(&tenant.id, name, &version).await?;
    let run = apps
        .dry_run(tenant, &app, &version, request.input, request.params)
        .await?;
    Ok((version, run))
}
