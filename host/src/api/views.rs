//! What the API returns: records turned into the JSON clients see (RFC 3339 times, no
//! token hashes, effective limits spelled out).

use crate::app_store::DryRun;
use crate::config::SandboxLimits;
use crate::platform::{AppRecord, ProfileVersion, TenantRecord, TenantStatus, VersionRecord};
use crate::runtime::{AppKind, FailureClass};
use mongodb::bson::DateTime;
use serde::Serialize;
use utoipa::ToSchema;

fn time(at: DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}

/// A tenant as the operator sees it.
#[derive(Debug, Serialize, ToSchema)]
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

/// A tenant with a freshly issued token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantWithToken {
    /// The tenant.
    pub tenant: TenantView,
    /// Its API token. Only its hash is stored: keep it now, or rotate it later.
    pub token: String,
}

/// The calling tenant, with the limits its apps run under.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: TenantView,
    /// Effective sandbox limits of its apps (before each app's own overrides).
    #[schema(value_type = Object)]
    pub limits: SandboxLimits,
}

/// One version of a profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileVersionView {
    /// 1, 2, …
    pub version: i64,
    /// When it was set.
    pub created_at: String,
    /// The profile.
    #[schema(value_type = Object)]
    pub profile: serde_json::Value,
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

/// An app.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    /// Its name.
    pub name: String,
    /// Batch or stream.
    pub kind: AppKind,
    /// The active version (the component's sha256).
    pub active: Option<String>,
    /// The version a rollback would activate.
    pub previous: Option<String>,
    /// The app's own sandbox overrides.
    #[schema(value_type = Object)]
    pub sandbox: serde_json::Value,
    /// The limits its calls run under.
    #[schema(value_type = Object)]
    pub limits: SandboxLimits,
    /// Changes so far.
    pub revision: i64,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl AppView {
    /// The view of `app`, running under `limits`.
    pub fn new(app: &AppRecord, limits: SandboxLimits) -> Self {
        Self {
            name: app.name.clone(),
            kind: app.kind,
            active: app.active.clone(),
            previous: app.history.last().cloned(),
            sandbox: serde_json::to_value(&app.sandbox).unwrap_or_default(),
            limits,
            revision: app.revision,
            created_at: time(app.created_at),
            updated_at: time(app.updated_at),
        }
    }
}

/// An immutable app version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// The version id: the component's sha256 in hex.
    pub version: String,
    /// Batch or stream.
    pub kind: AppKind,
    /// Component size in bytes.
    pub size: i64,
    /// What the component imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// Upload time.
    pub uploaded_at: String,
    /// Compile time at upload, in ms.
    pub compile_ms: f64,
    /// Fuel the admission probe burned.
    pub probe_fuel: i64,
    /// Whether it is the app's active version.
    pub active: bool,
}

impl VersionView {
    /// The view of `v`; `active` is the app's active digest.
    pub fn new(v: &VersionRecord, active: Option<&str>) -> Self {
        Self {
            version: v.digest.clone(),
            kind: v.kind,
            size: v.size,
            imports: v.imports.clone(),
            exports: v.exports.clone(),
            uploaded_at: time(v.uploaded_at),
            compile_ms: v.compile_ms,
            probe_fuel: v.probe_fuel,
            active: active == Some(v.digest.as_str()),
        }
    }
}

/// An app with its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppDetail {
    /// The app.
    pub app: AppView,
    /// Its versions, newest first.
    pub versions: Vec<VersionView>,
}

/// The result of an upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// The app after the upload.
    pub app: AppView,
    /// The version uploaded.
    pub version: VersionView,
    /// False when an identical component was already a version of this app.
    pub created: bool,
}

/// A failure of a call or of one message.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureView {
    /// The failure class (reject, out-of-fuel, …).
    pub class: String,
    /// What happened.
    pub message: String,
}

impl From<(FailureClass, String)> for FailureView {
    fn from((class, message): (FailureClass, String)) -> Self {
        Self {
            class: class.as_str().to_owned(),
            message,
        }
    }
}

/// What a dry run used.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// Fuel burnt.
    pub fuel: u64,
    /// Time of the call in ms.
    pub duration_ms: f64,
    /// Calls into the host.
    pub host_calls: u64,
    /// JSON bytes emitted.
    pub output_bytes: u64,
    /// Log lines dropped past the cap.
    pub logs_dropped: u64,
    /// The app's stdout (bounded).
    pub stdout: String,
    /// The app's stderr (bounded).
    pub stderr: String,
}

/// The result of a dry run: nothing was written anywhere.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunView {
    /// The version that ran.
    pub version: String,
    /// Whether the call succeeded as a whole.
    pub ok: bool,
    /// The first documents.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<serde_json::Value>,
    /// Documents emitted in all.
    pub documents_total: u64,
    /// The batch app's quality report.
    #[schema(value_type = Option<Object>)]
    pub quality: Option<serde_json::Value>,
    /// A stream app's outcome per input line: null for success.
    pub messages: Vec<Option<FailureView>>,
    /// Why the call failed as a whole.
    pub failure: Option<FailureView>,
    /// What it used.
    pub usage: UsageView,
}

impl DryRunView {
    /// The view of `run` of `version`.
    pub fn new(version: &str, run: DryRun) -> Self {
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
            messages: run
                .messages
                .into_iter()
                .map(|m| m.map(Into::into))
                .collect(),
            failure: run.failure.map(Into::into),
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
