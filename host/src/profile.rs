//! Tenant profiles: a tenant's batch and stream constraints, sandbox limits and sink settings.
//! Written by the operator in TOML or JSON, checked against a published JSON Schema
//! (`docs/tenant-profile.schema.json`, served at `/v1/schemas/tenant-profile.json`) and by
//! [`Profile::validate`]; stored versioned in the platform database.

use crate::config::{SandboxLimits, SandboxOverrides};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Files one batch upload may carry.
pub const DEFAULT_MAX_FILES_PER_REQUEST: u32 = 10;
/// The largest staged file, in MiB.
pub const DEFAULT_MAX_FILE_MIB: u64 = 1024;
/// Bytes a tenant may stage per day, in MiB.
pub const DEFAULT_MAX_MIB_PER_DAY: u64 = 10 * 1024;
/// Messages a stream may consume per window.
pub const DEFAULT_MAX_MESSAGES_PER_WINDOW: u64 = 1_000_000;
/// Bytes a stream may consume per window, in MiB.
pub const DEFAULT_MAX_MIB_PER_WINDOW: u64 = 1024;
/// The quota window of streams, in seconds.
pub const DEFAULT_WINDOW_SECS: u64 = 60;
/// Consumers a stream keeps at least (`stream.min_consumers_per_stream`).
pub const DEFAULT_MIN_CONSUMERS: u32 = 1;
/// Consumers a stream may scale up to (`stream.max_consumers_per_stream`).
pub const DEFAULT_MAX_CONSUMERS: u32 = 4;
/// How often stream consumers report, in seconds.
pub const DEFAULT_REPORT_INTERVAL_SECS: u64 = 5;
/// Backlog per consumer above which the monitor adds a consumer.
pub const DEFAULT_SCALE_UP_BACKLOG: u64 = 1000;
/// p99 latency (ms) above which the monitor adds a consumer.
pub const DEFAULT_SCALE_UP_LATENCY_MS: u64 = 2000;
/// Backlog per consumer below which the monitor may remove a consumer.
pub const DEFAULT_SCALE_DOWN_BACKLOG: u64 = 100;
/// Throughput per consumer (messages/s) below which the monitor may remove a consumer.
pub const DEFAULT_SCALE_DOWN_THROUGHPUT: u64 = 100;
/// Checks in a row a scaling condition must hold.
pub const DEFAULT_SCALE_SUSTAIN: u32 = 2;
/// Seconds the monitor leaves a stream alone after a decision.
pub const DEFAULT_SCALE_COOLDOWN_SECS: u64 = 30;
/// The collection documents land in.
pub const DEFAULT_COLLECTION: &str = "documents";
/// Documents per `insert_many`.
pub const DEFAULT_INSERT_BATCH: usize = 1000;
/// The largest daas write request, in MiB.
pub const DEFAULT_DAAS_MAX_REQUEST_MIB: u64 = 16;
/// Documents one daas write may carry.
pub const DEFAULT_DAAS_MAX_DOCUMENTS_PER_REQUEST: u64 = 100_000;
/// Documents one daas read returns at most.
pub const DEFAULT_DAAS_MAX_READ_LIMIT: u64 = 1000;
/// How long one daas read may run on the coredms, in ms.
pub const DEFAULT_DAAS_MAX_QUERY_MS: u64 = 10_000;
/// The most consumers any stream may have, whatever the profile says.
pub const MAX_CONSUMERS_CEILING: u32 = 256;

/// A tenant's profile. Every section and key is optional; what is left out takes the
/// documented default (sandbox limits: the operator's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[schemars(title = "mysimbdp tenant profile", extend("$id" = "https://mysimbdp.dev/schemas/tenant-profile.json"))]
pub struct Profile {
    /// Constraints on batch uploads.
    pub batch: BatchConstraints,
    /// Constraints on stream consumption.
    pub stream: StreamConstraints,
    /// Sandbox limits of this tenant's apps, within the operator's maxima.
    pub sandbox: SandboxOverrides,
    /// Where and how documents are written.
    pub sink: SinkSettings,
    /// The data-as-a-service API: what third-party programs may write and read.
    pub daas: DaasConstraints,
}

/// `[daas]`: limits of the data-as-a-service API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DaasConstraints {
    /// The largest write request, in MiB.
    #[schemars(range(min = 1, max = 1024))]
    pub max_request_mib: u64,
    /// Documents one write request may carry.
    #[schemars(range(min = 1))]
    pub max_documents_per_request: u64,
    /// Bytes written through the API per UTC day, in MiB.
    #[schemars(range(min = 1))]
    pub max_mib_per_day: u64,
    /// Documents one read returns at most.
    #[schemars(range(min = 1, max = 10000))]
    pub max_read_limit: u64,
    /// How long one read may run on the coredms, in ms; a slower query is stopped by
    /// MongoDB and refused with 422 `query_timeout`.
    #[schemars(range(min = 1, max = 60000))]
    pub max_query_ms: u64,
}

impl Default for DaasConstraints {
    fn default() -> Self {
        Self {
            max_request_mib: DEFAULT_DAAS_MAX_REQUEST_MIB,
            max_documents_per_request: DEFAULT_DAAS_MAX_DOCUMENTS_PER_REQUEST,
            max_mib_per_day: DEFAULT_MAX_MIB_PER_DAY,
            max_read_limit: DEFAULT_DAAS_MAX_READ_LIMIT,
            max_query_ms: DEFAULT_DAAS_MAX_QUERY_MS,
        }
    }
}

/// `[batch]`: what one upload and one day may bring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConstraints {
    /// Files one upload request may carry.
    #[schemars(range(min = 1, max = 10000))]
    pub max_files_per_request: u32,
    /// The largest file, in MiB.
    #[schemars(range(min = 1))]
    pub max_file_mib: u64,
    /// Media types accepted, e.g. `text/csv`; `*/*` accepts any.
    pub allowed_content_types: Vec<String>,
    /// Bytes staged per UTC day, in MiB.
    #[schemars(range(min = 1))]
    pub max_mib_per_day: u64,
    /// What happens to a staged file once ingested.
    pub after_success: AfterSuccess,
}

impl Default for BatchConstraints {
    fn default() -> Self {
        Self {
            max_files_per_request: DEFAULT_MAX_FILES_PER_REQUEST,
            max_file_mib: DEFAULT_MAX_FILE_MIB,
            allowed_content_types: ["text/csv", "application/json", "application/x-ndjson"]
                .map(String::from)
                .to_vec(),
            max_mib_per_day: DEFAULT_MAX_MIB_PER_DAY,
            after_success: AfterSuccess::Delete,
        }
    }
}

/// The fate of an ingested staged file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AfterSuccess {
    /// Remove it.
    #[default]
    Delete,
    /// Move it to the tenant's archive.
    Archive,
}

/// `[stream]`: quotas, consumers and reports of the tenant's streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConstraints {
    /// Messages consumed per window before consumption is paused.
    #[schemars(range(min = 1))]
    pub max_messages_per_window: u64,
    /// Bytes consumed per window before consumption is paused, in MiB.
    #[schemars(range(min = 1))]
    pub max_mib_per_window: u64,
    /// The quota window, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub window_secs: u64,
    /// Consumers each stream keeps at least, over all hosts (`min_consumers` in older
    /// profiles).
    #[serde(alias = "min_consumers")]
    #[schemars(range(min = 0, max = 256))]
    pub min_consumers_per_stream: u32,
    /// Consumers each stream may scale up to, over all hosts (`max_consumers` in older
    /// profiles). Not a host's bound: that is the operator's `stream.max_consumers_per_host`.
    #[serde(alias = "max_consumers")]
    #[schemars(range(min = 1, max = 256))]
    pub max_consumers_per_stream: u32,
    /// How often consumers report, in seconds.
    #[schemars(range(min = 1, max = 3600))]
    pub report_interval_secs: u64,
    /// When the monitor adds or removes consumers.
    pub autoscale: Autoscale,
}

/// `[stream.autoscale]`: the monitor's thresholds. A stream gains a consumer when its backlog
/// per consumer or its p99 latency stays above the upper thresholds for `sustain` checks in a
/// row; it loses one when backlog and throughput per consumer stay below the lower ones for
/// `sustain` checks. The gap between the thresholds and the `cooldown_secs` after each
/// decision keep it from flapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Autoscale {
    /// Messages waiting per consumer above which a consumer is added.
    #[schemars(range(min = 1))]
    pub scale_up_backlog: u64,
    /// p99 ingestion latency in ms above which a consumer is added.
    #[schemars(range(min = 1))]
    pub scale_up_latency_ms: u64,
    /// Messages waiting per consumer below which a consumer may be removed (below
    /// `scale_up_backlog`).
    pub scale_down_backlog: u64,
    /// Messages per second per consumer below which a consumer may be removed.
    pub scale_down_throughput: u64,
    /// Checks in a row a condition must hold before the monitor acts.
    #[schemars(range(min = 1, max = 100))]
    pub sustain: u32,
    /// Seconds after a decision during which the stream is left alone.
    #[schemars(range(max = 86400))]
    pub cooldown_secs: u64,
}

impl Default for Autoscale {
    fn default() -> Self {
        Self {
            scale_up_backlog: DEFAULT_SCALE_UP_BACKLOG,
            scale_up_latency_ms: DEFAULT_SCALE_UP_LATENCY_MS,
            scale_down_backlog: DEFAULT_SCALE_DOWN_BACKLOG,
            scale_down_throughput: DEFAULT_SCALE_DOWN_THROUGHPUT,
            sustain: DEFAULT_SCALE_SUSTAIN,
            cooldown_secs: DEFAULT_SCALE_COOLDOWN_SECS,
        }
    }
}

impl Default for StreamConstraints {
    fn default() -> Self {
        Self {
            max_messages_per_window: DEFAULT_MAX_MESSAGES_PER_WINDOW,
            max_mib_per_window: DEFAULT_MAX_MIB_PER_WINDOW,
            window_secs: DEFAULT_WINDOW_SECS,
            min_consumers_per_stream: DEFAULT_MIN_CONSUMERS,
            max_consumers_per_stream: DEFAULT_MAX_CONSUMERS,
            report_interval_secs: DEFAULT_REPORT_INTERVAL_SECS,
            autoscale: Autoscale::default(),
        }
    }
}

/// `[sink]`: where documents are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SinkSettings {
    /// Which coredms: `auto` (a dedicated one published in the registry, else the shared
    /// one), `shared` (always the shared one), or `dedicated` (only a published one; writes
    /// fail with a clear error while none is).
    pub coredms: CoredmsMode,
    /// The tenant's database on the shared coredms; default `tenant_<tenant id>` (with `-` as
    /// `_`). A dedicated coredms names its own.
    pub database: Option<String>,
    /// The collection documents land in, unless an app or stream names another.
    pub collection: String,
    /// Documents per `insert_many`.
    #[schemars(range(min = 1, max = 100000))]
    pub insert_batch: usize,
    /// How durable a write must be before input is acknowledged.
    pub write_concern: WriteConcern,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            coredms: CoredmsMode::Auto,
            database: None,
            collection: DEFAULT_COLLECTION.to_owned(),
            insert_batch: DEFAULT_INSERT_BATCH,
            write_concern: WriteConcern::Majority,
        }
    }
}

/// Which coredms serves the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CoredmsMode {
    /// A dedicated coredms published in the registry if there is one, else the shared one.
    #[default]
    Auto,
    /// Always the shared coredms.
    Shared,
    /// Only a dedicated coredms from the registry.
    Dedicated,
}

/// MongoDB write concern of the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteConcern {
    /// Acknowledged by a majority of the replica set: survives a primary's loss.
    #[default]
    Majority,
    /// Acknowledged by the primary alone: faster, may be rolled back on failover.
    Primary,
}

/// The format a profile is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML.
    Toml,
    /// JSON.
    Json,
}

/// A refused profile: the field (dotted path) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// Where: `stream.max_consumers_per_stream`, or empty when the document as a whole is unreadable.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ProfileError {}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> ProfileError {
    ProfileError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Profile {
    /// Parses a profile, naming the field of the first error. Does not validate values.
    pub fn parse(text: &str, format: Format) -> Result<Self, ProfileError> {
        match format {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize(&mut de).map_err(|e| {
                    let field = e.path().to_string();
                    let field = if field == "." { String::new() } else { field };
                    refuse(field, e.into_inner().to_string())
                })
            }
            Format::Toml => {
                let de = toml::Deserializer::parse(text)
                    .map_err(|e| refuse("", e.message().to_owned()))?;
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let field = e.path().to_string();
                    let field = if field == "." { String::new() } else { field };
                    refuse(field, e.into_inner().message().to_owned())
                })
            }
        }
    }

    /// Checks every value, and the sandbox limits against the operator's `ceiling`.
    pub fn validate(&self, ceiling: &SandboxLimits) -> Result<(), ProfileError> {
        let batch = &self.batch;
        positive(
            "batch.max_files_per_request",
            batch.max_files_per_request.into(),
        )?;
        positive("batch.max_file_mib", batch.max_file_mib)?;
        positive("batch.max_mib_per_day", batch.max_mib_per_day)?;
        if batch.allowed_content_types.is_empty() {
            return Err(refuse(
                "batch.allowed_content_types",
                "is empty: no file could ever be uploaded; use [\"*/*\"] to accept any",
            ));
        }
        for (i, media_type) in batch.allowed_content_types.iter().enumerate() {
            if !is_media_type(media_type) {
                return Err(refuse(
                    format!("batch.allowed_content_types[{i}]"),
                    format!("{media_type:?} is not a media type like text/csv"),
                ));
            }
        }
        let stream = &self.stream;
        positive(
            "stream.max_messages_per_window",
            stream.max_messages_per_window,
        )?;
        positive("stream.max_mib_per_window", stream.max_mib_per_window)?;
        within("stream.window_secs", stream.window_secs, 1, 86_400)?;
        within(
            "stream.report_interval_secs",
            stream.report_interval_secs,
            1,
            3600,
        )?;
        within(
            "stream.max_consumers_per_stream",
            stream.max_consumers_per_stream.into(),
            1,
            MAX_CONSUMERS_CEILING.into(),
        )?;
        if stream.min_consumers_per_stream > stream.max_consumers_per_stream {
            return Err(refuse(
                "stream.min_consumers_per_stream",
                format!(
                    "{} is above stream.max_consumers_per_stream = {}",
                    stream.min_consumers_per_stream, stream.max_consumers_per_stream
                ),
            ));
        }
        let scale = &stream.autoscale;
        positive("stream.autoscale.scale_up_backlog", scale.scale_up_backlog)?;
        positive(
            "stream.autoscale.scale_up_latency_ms",
            scale.scale_up_latency_ms,
        )?;
        within("stream.autoscale.sustain", scale.sustain.into(), 1, 100)?;
        within(
            "stream.autoscale.cooldown_secs",
            scale.cooldown_secs,
            0,
            86_400,
        )?;
        if scale.scale_down_backlog >= scale.scale_up_backlog {
            return Err(refuse(
                "stream.autoscale.scale_down_backlog",
                format!(
                    "{} is not below stream.autoscale.scale_up_backlog = {}: the monitor would \
                     flap between adding and removing consumers",
                    scale.scale_down_backlog, scale.scale_up_backlog
                ),
            ));
        }
        if let Some((key, value, max)) = self.sandbox.exceeding(ceiling) {
            return Err(refuse(
                format!("sandbox.{key}"),
                format!("{value} is above the operator's maximum of {max}"),
            ));
        }
        let effective = self.sandbox.apply(ceiling);
        if let Some(key) = effective.zero_key() {
            return Err(refuse(format!("sandbox.{key}"), "must be at least 1"));
        }
        let sink = &self.sink;
        if let Some(database) = &sink.database
            && !is_database_name(database)
        {
            return Err(refuse(
                "sink.database",
                format!("{database:?} is not a valid MongoDB database name"),
            ));
        }
        if let Err(e) = crate::names::collection_name(&sink.collection) {
            return Err(refuse("sink.collection", e.to_string()));
        }
        within("sink.insert_batch", sink.insert_batch as u64, 1, 100_000)?;
        let daas = &self.daas;
        within("daas.max_request_mib", daas.max_request_mib, 1, 1024)?;
        positive(
            "daas.max_documents_per_request",
            daas.max_documents_per_request,
        )?;
        positive("daas.max_mib_per_day", daas.max_mib_per_day)?;
        within("daas.max_read_limit", daas.max_read_limit, 1, 10_000)?;
        within("daas.max_query_ms", daas.max_query_ms, 1, 60_000)?;
        Ok(())
    }

    /// The tenant's database: the profile's, or `tenant_<id>`.
    pub fn database(&self, tenant: &str) -> String {
        self.sink
            .database
            .clone()
            .unwrap_or_else(|| crate::names::tenant_database(tenant))
    }

    /// The JSON Schema of profiles, as published.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Profile)).unwrap_or_default()
    }
}

fn positive(field: &str, value: u64) -> Result<(), ProfileError> {
    if value == 0 {
        return Err(refuse(field, "must be at least 1"));
    }
    Ok(())
}

fn within(field: &str, value: u64, min: u64, max: u64) -> Result<(), ProfileError> {
    if !(min..=max).contains(&value) {
        return Err(refuse(
            field,
            format!("{value} is not within {min}..={max}"),
        ));
    }
    Ok(())
}

fn is_media_type(value: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+*".contains(c))
    };
    match value.split_once('/') {
        Some((kind, sub)) => token(kind) && token(sub) && value == value.to_ascii_lowercase(),
        None => false,
    }
}

fn is_database_name(name: &str) -> bool {
    crate::names::is_database_name(name) && !matches!(name, "admin" | "local" | "config")
}

impl SandboxLimits {
    /// The first limit that is zero where that makes no sense.
    fn zero_key(&self) -> Option<&'static str> {
        [
            ("fuel", self.fuel),
            ("deadline_ms", self.deadline_ms),
            ("memory_mib", self.memory_mib),
            ("max_documents_per_call", self.max_documents_per_call as u64),
            ("max_document_bytes", self.max_document_bytes as u64),
            ("output_mib", self.output_mib),
            ("host_calls", self.host_calls),
            ("resources", self.resources as u64),
        ]
        .into_iter()
        .find(|(_, value)| *value == 0)
        .map(|(key, _)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling() -> SandboxLimits {
        SandboxLimits::default()
    }

    #[test]
    fn the_example_tenants_are_valid() {
        let acme =
            Profile::parse(include_str!("../../config/tenants/acme.toml"), Format::Toml).unwrap();
        acme.validate(&ceiling()).unwrap();
        let globex = Profile::parse(
            include_str!("../../config/tenants/globex.json"),
            Format::Json,
        )
        .unwrap();
        globex.validate(&ceiling()).unwrap();
        assert_ne!(acme, globex);
        assert_ne!(acme, Profile::default());
    }

    #[test]
    fn the_published_schema_is_current() {
        let published: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/tenant-profile.schema.json")).unwrap();
        assert_eq!(
            published,
            Profile::json_schema(),
            "regenerate docs/tenant-profile.schema.json: \
             cargo run -p mysimbdp-host -- tenant profile schema > docs/tenant-profile.schema.json"
        );
    }

    #[test]
    fn empty_documents_take_the_defaults() {
        assert_eq!(
            Profile::parse("", Format::Toml).unwrap(),
            Profile::default()
        );
        assert_eq!(
            Profile::parse("{}", Format::Json).unwrap(),
            Profile::default()
        );
        Profile::default().validate(&ceiling()).unwrap();
        assert_eq!(Profile::default().database("acme-eu"), "tenant_acme_eu");
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let error = Profile::parse("[stream]\nmax_consumer = 3\n", Format::Toml).unwrap_err();
        assert_eq!(error.field, "stream.max_consumer", "{error}");
        assert!(error.reason.contains("max_consumer"), "{error}");
        let error =
            Profile::parse(r#"{"batch": {"max_file_mib": "big"}}"#, Format::Json).unwrap_err();
        assert_eq!(error.field, "batch.max_file_mib", "{error}");
        let error = Profile::parse("{", Format::Json).unwrap_err();
        assert!(!error.reason.is_empty());
    }

    #[test]
    fn the_old_consumer_bounds_still_load() {
        // Profiles stored before the rename (in MongoDB, in operators' files) keep loading.
        for format_and_text in [
            (
                Format::Toml,
                "[stream]\nmin_consumers = 2\nmax_consumers = 8\n",
            ),
            (
                Format::Json,
                r#"{"stream": {"min_consumers": 2, "max_consumers": 8}}"#,
            ),
        ] {
            let profile = Profile::parse(format_and_text.1, format_and_text.0).unwrap();
            assert_eq!(profile.stream.min_consumers_per_stream, 2);
            assert_eq!(profile.stream.max_consumers_per_stream, 8);
            profile.validate(&ceiling()).unwrap();
        }
        // Both spellings of one key: refused, not silently merged.
        let error = Profile::parse(
            "[stream]\nmax_consumers = 8\nmax_consumers_per_stream = 3\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(error.reason.contains("max_consumers"), "{error}");
        // What is stored and shown is the new spelling.
        let shown = serde_json::to_value(Profile::default()).unwrap();
        assert!(
            shown["stream"]["max_consumers_per_stream"].is_u64(),
            "{shown}"
        );
        assert!(shown["stream"].get("max_consumers").is_none(), "{shown}");
    }

    #[test]
    fn values_are_checked_by_field() {
        let cases = [
            (
                "[stream]\nmin_consumers_per_stream = 5\nmax_consumers_per_stream = 2\n",
                "stream.min_consumers_per_stream",
            ),
            ("[stream]\nwindow_secs = 0\n", "stream.window_secs"),
            (
                "[stream.autoscale]\nscale_up_backlog = 100\nscale_down_backlog = 100\n",
                "stream.autoscale.scale_down_backlog",
            ),
            (
                "[stream.autoscale]\nsustain = 0\n",
                "stream.autoscale.sustain",
            ),
            (
                "[batch]\nallowed_content_types = []\n",
                "batch.allowed_content_types",
            ),
            (
                "[batch]\nallowed_content_types = [\"text/csv\", \"csv\"]\n",
                "batch.allowed_content_types[1]",
            ),
            ("[sandbox]\nmemory_mib = 100000\n", "sandbox.memory_mib"),
            ("[sandbox]\nfuel = 0\n", "sandbox.fuel"),
            ("[sink]\ndatabase = \"a.b\"\n", "sink.database"),
            ("[sink]\ncollection = \"system.users\"\n", "sink.collection"),
            ("[sink]\ninsert_batch = 0\n", "sink.insert_batch"),
        ];
        for (text, field) in cases {
            let profile = Profile::parse(text, Format::Toml).unwrap();
            let error = profile.validate(&ceiling()).unwrap_err();
            assert_eq!(error.field, field, "{text}: {error}");
        }
    }
}
