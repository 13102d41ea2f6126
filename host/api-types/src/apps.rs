//! Apps, their versions and dry runs.

use crate::FailureClass;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use utoipa::ToSchema;

/// Which kind of app a component is, by the world it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AppKind {
    /// `mysimbdp:ingest/batch-app`: ingests staged files.
    Batch,
    /// `mysimbdp:ingest/stream-app`: ingests broker messages.
    Stream,
}

impl AppKind {
    /// The WIT world of this kind (the platform serves it in versions 0.1.0 and 0.2.0).
    pub fn world(self) -> &'static str {
        match self {
            Self::Batch => "mysimbdp:ingest/batch-app",
            Self::Stream => "mysimbdp:ingest/stream-app",
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Batch => "batch",
            Self::Stream => "stream",
        })
    }
}

/// An app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The limits of its calls before a version's preset: the operator's defaults, then the
    /// tenant profile's overrides, then the app's own (each version says its own `limits`).
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    /// Changes so far.
    pub revision: i64,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// An immutable app version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// The sandbox preset it runs under (chosen at upload); none: the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The limits its calls run under: its preset's (or the operator's defaults), then the
    /// tenant profile's overrides, then the app's own.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub limits: serde_json::Value,
    /// Whether it is the app's active version.
    pub active: bool,
}

/// An app with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppDetail {
    /// The app.
    pub app: AppView,
    /// Its versions, newest first.
    pub versions: Vec<VersionView>,
}

/// The result of an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Uploaded {
    /// The app after the upload.
    pub app: AppView,
    /// The version uploaded.
    pub version: VersionView,
    /// False when an identical component was already a version of this app.
    pub created: bool,
}

/// A failure of a call or of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    /// The failure class (reject, out-of-fuel, …).
    #[schema(value_type = String)]
    pub class: FailureClass,
    /// What happened.
    pub message: String,
}

/// What a dry run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// `POST /v1/apps/{name}/activate`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    /// The version id, or a unique prefix of 8+ hex digits.
    pub version: String,
}

/// `POST /v1/apps/{name}/dry-run`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// The input: a small file's text (batch app) or messages, one per line (stream app).
    pub input: String,
    /// App parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The version to run (default: the active one).
    pub version: Option<String>,
}
