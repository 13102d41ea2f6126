//! What the API returns: records turned into the JSON clients see (RFC 3339 times, no
//! token hashes, effective limits spelled out). The view types live in the API types crate
//! (`mysimbdp-api`); the conversions from host records live here, next to the records.

use crate::app_store::DryRun;
use crate::config::SandboxLimits;
use crate::platform::{AppRecord, ProfileVersion, TenantRecord, VersionRecord};
use crate::runtime::FailureClass;
use mongodb::bson::DateTime;
pub use mysimbdp_api::{
    AppDetail, AppView, DryRunView, FailureView, MeView, ProfileVersionView, TenantView,
    TenantWithToken, Uploaded, UsageView, VersionView,
};

fn time(at: DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}

/// Sandbox limits as a view shows them (an object of named limits).
pub fn limits(limits: &SandboxLimits) -> serde_json::Value {
    serde_json::to_value(limits).unwrap_or_default()
}

impl From<&TenantRecord> for TenantView {
    fn from(t: &TenantRecord) -> Self {
        Self {
            id: t.id.clone(),
            status: t.status,
            suspended_reason: t.suspended_reason.clone(),
            profile_version: t.profile_version,
            profile: serde_json::to_value(&t.profile).unwrap_or_default(),
            database: t.profile.database(&t.id),
            token_issued_at: time(t.token_issued_at),
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
        }
    }
}

impl From<&ProfileVersion> for ProfileVersionView {
    fn from(v: &ProfileVersion) -> Self {
        Self {
            version: v.version,
            created_at: time(v.created_at),
            profile: serde_json::to_value(&v.profile).unwrap_or_default(),
        }
    }
}

/// Builds an [`AppView`] from a host record (a trait: the view is the types crate's).
pub trait AppViewExt {
    /// The view of `app`, running under `limits`.
    fn new(app: &AppRecord, limits: SandboxLimits) -> Self;
}

impl AppViewExt for AppView {
    fn new(app: &AppRecord, limits: SandboxLimits) -> Self {
        Self {
            name: app.name.clone(),
            kind: app.kind,
            active: app.active.clone(),
            previous: app.history.last().cloned(),
            sandbox: serde_json::to_value(&app.sandbox).unwrap_or_default(),
            limits: self::limits(&limits),
            revision: app.revision,
            created_at: time(app.created_at),
            updated_at: time(app.updated_at),
        }
    }
}

/// Builds a [`VersionView`] from a host record (a trait: the view is the types crate's).
pub trait VersionViewExt {
    /// The view of `v`, running under `limits`; `active` is the app's active digest.
    fn new(v: &VersionRecord, limits: &SandboxLimits, active: Option<&str>) -> Self;
}

impl VersionViewExt for VersionView {
    fn new(v: &VersionRecord, limits: &SandboxLimits, active: Option<&str>) -> Self {
        Self {
            version: v.digest.clone(),
            kind: v.kind,
            size: v.size,
            imports: v.imports.clone(),
            exports: v.exports.clone(),
            uploaded_at: time(v.uploaded_at),
            compile_ms: v.compile_ms,
            probe_fuel: v.probe_fuel,
            preset: v.preset.clone(),
            limits: self::limits(limits),
            active: active == Some(v.digest.as_str()),
        }
    }
}

fn failure((class, message): (FailureClass, String)) -> FailureView {
    FailureView { class, message }
}

/// Builds a [`DryRunView`] from a run (a trait: the view is the types crate's).
pub trait DryRunViewExt {
    /// The view of `run` of `version`.
    fn new(version: &str, run: DryRun) -> Self;
}

impl DryRunViewExt for DryRunView {
    fn new(version: &str, run: DryRun) -> Self {
        Self {
            version: version.to_owned(),
            ok: run.failure.is_none(),
            documents: run
                .documents
                .iter()
                .map(|json| {
                    serde_json::from_str(json).unwrap_or(serde_json::Value::String(json.clone()))
                })
                .collect(),
            documents_total: run.documents_total,
            quality: run
                .quality
                .map(|q| serde_json::to_value(q).unwrap_or_default()),
            messages: run.messages.into_iter().map(|m| m.map(failure)).collect(),
            failure: run.failure.map(failure),
            usage: UsageView {
                fuel: run.usage.fuel,
                duration_ms: run.duration.as_secs_f64() * 1000.0,
                host_calls: run.usage.host_calls,
                output_bytes: run.usage.output_bytes,
                logs_dropped: run.usage.logs_dropped,
                stdout: run.usage.stdout,
                stderr: run.usage.stderr,
            },
        }
    }
}
