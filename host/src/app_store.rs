//! The app store: admits uploaded components (validate, type-check, compile, probe, store)
//! and hands any host the pre-linked app of a stored version, compiling it from the platform
//! database on first use, so any host can run any app.

use crate::config::{AppsConfig, SandboxConfig, SandboxLimits, SandboxOverrides};
use crate::documents::IdScheme;
use crate::platform::{AppRecord, NewVersion, Platform, StoreError, TenantRecord, VersionRecord};
use crate::runtime::{
    App, AppKind, BatchInput, CallOptions, Failure, FailureClass, Message, OutputBatch, Runtime,
    Usage,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Why an upload was refused, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The component is not an admissible app (its failure class says why).
    #[error("{0}")]
    Refused(Failure),

    /// The platform store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a tenant uploads besides the component.
#[derive(Debug, Default)]
pub struct UploadOptions<'a> {
    /// Make the new version active (a new app's first version always is).
    pub activate: bool,
    /// The sandbox preset the version runs under (`rust`, `python`, `js`, …).
    pub preset: Option<&'a str>,
    /// A representative input: a file for a batch app, messages one per line for a stream
    /// app. The version is refused if the app fails on it under the limits it will run with.
    pub sample: Option<&'a [u8]>,
}

/// An admitted upload.
pub struct Admitted {
    /// The stored version.
    pub version: VersionRecord,
    /// Whether this upload created it (an identical re-upload does not).
    pub created: bool,
    /// The app after activation.
    pub app: AppRecord,
}

/// Admission and loading of tenant apps. One per host.
pub struct AppStore {
    runtime: Arc<Runtime>,
    platform: Platform,
    config: AppsConfig,
    sandbox: SandboxConfig,
    loaded: Mutex<LoadedApps>,
}

/// Pre-linked apps by digest, least recently used dropped first.
struct LoadedApps {
    apps: HashMap<String, (Arc<App>, u64)>,
    clock: u64,
    capacity: usize,
}

impl LoadedApps {
    fn get(&mut self, digest: &str) -> Option<Arc<App>> {
        self.clock += 1;
        let clock = self.clock;
        self.apps.get_mut(digest).map(|(app, used)| {
            *used = clock;
            app.clone()
        })
    }

    fn insert(&mut self, app: Arc<App>) {
        if self.apps.len() >= self.capacity {
            let oldest = self
                .apps
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(digest, _)| digest.clone());
            if let Some(oldest) = oldest {
                self.apps.remove(&oldest);
            }
        }
        self.clock += 1;
        self.apps.insert(app.digest.clone(), (app, self.clock));
    }
}

impl AppStore {
    /// A store over `platform`, running apps in `runtime`.
    pub fn new(
        runtime: Arc<Runtime>,
        platform: Platform,
        config: AppsConfig,
        sandbox: SandboxConfig,
    ) -> Self {
        let capacity = config.loaded_apps;
        Self {
            runtime,
            platform,
            config,
            sandbox,
            loaded: Mutex::new(LoadedApps {
                apps: HashMap::new(),
                clock: 0,
                capacity,
            }),
        }
    }

    /// The runtime apps run in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The most any tenant's app may be given (the operator's ceilings).
    pub fn ceiling(&self) -> SandboxLimits {
        self.sandbox.ceiling()
    }

    /// The limits of a tenant's calls: the operator's defaults, the profile's overrides.
    pub fn tenant_limits(&self, tenant: &TenantRecord) -> SandboxLimits {
        tenant.profile.sandbox.apply(&self.sandbox.limits)
    }

    /// The limits of an app's calls: the tenant's, then the app's own overrides (before any
    /// version's preset: see [`AppStore::version_limits`]).
    pub fn app_limits(&self, tenant: &TenantRecord, app: &AppRecord) -> SandboxLimits {
        app.sandbox.apply(&self.tenant_limits(tenant))
    }

    /// The limits a version's calls run under: its preset's limits in place of the
    /// operator's defaults, then the tenant profile's overrides, then the app's. A preset the
    /// operator no longer offers (or has put above the ceilings) falls back to the defaults.
    pub fn version_limits(
        &self,
        tenant: &TenantRecord,
        app: &AppRecord,
        version: &VersionRecord,
    ) -> SandboxLimits {
        let base = match version.preset.as_deref().map(|p| self.sandbox.preset(p)) {
            Some(Ok(limits)) => limits,
            Some(Err(reason)) => {
                tracing::warn!(tenant = %tenant.id, app = %app.name, version = %version.digest,
                    %reason, "running the version under the default limits");
                self.sandbox.limits.clone()
            }
            None => self.sandbox.limits.clone(),
        };
        app.sandbox.apply(&tenant.profile.sandbox.apply(&base))
    }

    /// Refuses a preset the operator does not offer, or one above the operator's ceilings,
    /// with the reason.
    pub fn check_preset(&self, preset: &str) -> Result<(), String> {
        self.sandbox.preset(preset).map(drop)
    }

    /// The limits an upload will run under, or why its preset is refused.
    fn upload_limits(
        &self,
        tenant: &TenantRecord,
        existing: Option<&AppRecord>,
        preset: Option<&str>,
    ) -> Result<SandboxLimits, AdmitError> {
        let base = match preset {
            Some(name) => self
                .sandbox
                .preset(name)
                .map_err(|reason| AdmitError::Refused(Failure::invalid(reason)))?,
            None => self.sandbox.limits.clone(),
        };
        let tenant_limits = tenant.profile.sandbox.apply(&base);
        Ok(match existing {
            Some(app) => app.sandbox.apply(&tenant_limits),
            None => tenant_limits,
        })
    }

    /// Checks app limits against the tenant's: an app may only lower them.
    pub fn check_app_sandbox(
        &self,
        tenant: &TenantRecord,
        sandbox: &SandboxOverrides,
    ) -> Result<(), String> {
        let ceiling = self.tenant_limits(tenant);
        if let Some((key, value, max)) = sandbox.exceeding(&ceiling) {
            return Err(format!(
                "sandbox.{key} = {value} is above the tenant's limit of {max}"
            ));
        }
        sandbox
            .apply(&ceiling)
            .validate(&self.sandbox.engine)
            .map_err(|e| format!("{e:#}"))
    }

    /// Admits a component as a version of `name`: checks the preset asked for, checks it is
    /// a component of one of our worlds importing only what the platform provides and grants
    /// (before compiling: see [`Runtime::admit`]), compiles it (or finds it compiled),
    /// runs the admission probe (and the sample probe, given a sample), stores it, and
    /// activates it if asked (a new app's first version is always activated). Nothing is
    /// stored unless every check passed.
    pub async fn admit(
        &self,
        tenant: &TenantRecord,
        name: &str,
        wasm: &[u8],
        options: UploadOptions<'_>,
    ) -> Result<Admitted, AdmitError> {
        if let Some(sample) = options.sample {
            let max = self.config.probe_sample_max_kib.saturating_mul(1024);
            if sample.len() > max {
                return Err(AdmitError::Refused(Failure::invalid(format!(
                    "the sample is {} bytes, above the cap of {max} bytes \
                     (apps.probe_sample_max_kib)",
                    sample.len()
                ))));
            }
        }
        if let Some(preset) = options.preset {
            // Refused before compiling: a wrong preset costs the platform nothing.
            self.check_preset(preset)
                .map_err(|reason| AdmitError::Refused(Failure::invalid(reason)))?;
        }
        let activate = options.activate;
        let app = self
            .runtime
            .admit(wasm, &self.config.refused_imports)
            .await
            .map_err(AdmitError::Refused)?;
        let existing = match self.platform.app(&tenant.id, name).await {
            Ok(app) => Some(app),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(existing) = &existing
            && existing.kind != app.kind
        {
            return Err(StoreError::Conflict(format!(
                "app {name:?} is a {} app and this component is a {} app; upload it \
                     under another name",
                existing.kind, app.kind
            ))
            .into());
        }
        let limits = self.upload_limits(tenant, existing.as_ref(), options.preset)?;
        let probe = admission_probe(&self.runtime, &self.config, &app, &tenant.id, name, &limits)
            .await
            .map_err(AdmitError::Refused)?;
        if let Some(sample) = options.sample {
            sample_probe(&self.runtime, &app, &tenant.id, name, &limits, sample)
                .await
                .map_err(AdmitError::Refused)?;
        }
        let (version, created) = self
            .platform
            .store_version(NewVersion {
                tenant: &tenant.id,
                app: name,
                wasm,
                digest: &app.digest,
                kind: app.kind,
                imports: &app.imports,
                exports: &app.exports,
                compile_ms: app.load_time.as_secs_f64() * 1000.0,
                probe_fuel: probe.fuel,
                preset: options.preset,
            })
            .await?;
        let digest = app.digest.clone();
        self.remember(app);
        let current = self.platform.app(&tenant.id, name).await?;
        let app = if activate || current.active.is_none() {
            self.platform.activate(&tenant.id, name, &digest).await?
        } else {
            current
        };
        Ok(Admitted {
            version,
            created,
            app,
        })
    }

    /// The pre-linked app of a stored version: from memory, or read from the platform
    /// database and compiled (or loaded from this host's artifact cache).
    pub async fn load(&self, version: &VersionRecord) -> Result<Arc<App>, AdmitError> {
        if let Some(app) = self.cached(&version.digest) {
            return Ok(app);
        }
        let wasm = self.platform.component(version).await?;
        let app = self
            .runtime
            .load(&wasm)
            .await
            .map_err(AdmitError::Refused)?;
        if app.digest != version.digest {
            return Err(StoreError::Other(anyhow::anyhow!(
                "component of {} read back with digest {}: the stored blob is corrupt",
                version.id,
                app.digest
            ))
            .into());
        }
        Ok(self.remember(app))
    }

    fn cached(&self, digest: &str) -> Option<Arc<App>> {
        self.loaded.lock().ok()?.get(digest)
    }

    fn remember(&self, app: App) -> Arc<App> {
        let app = Arc::new(app);
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(app.clone());
        }
        app
    }

    /// Runs an app on a small input without writing anything: the tenant's "try it".
    pub async fn dry_run(
        &self,
        tenant: &TenantRecord,
        record: &AppRecord,
        version: &VersionRecord,
        input: String,
        params: BTreeMap<String, String>,
    ) -> Result<DryRun, AdmitError> {
        let app = self.load(version).await?;
        let options = CallOptions {
            label: format!(
                "{}/{}@{} (dry run)",
                tenant.id,
                record.name,
                short(&version.digest)
            ),
            params: Arc::new(params),
            limits: self.version_limits(tenant, record, version),
        };
        let max = self.config.dry_run_max_documents;
        let started = Instant::now();
        let mut run = DryRun::default();
        match app.kind {
            AppKind::Batch => {
                let (sink, mut batches) = mpsc::channel::<OutputBatch>(4);
                let tenant_id = tenant.id.clone();
                let collect = tokio::spawn(async move {
                    let (mut kept, mut total) = (Vec::new(), 0u64);
                    while let Some(batch) = batches.recv().await {
                        total += batch.documents.len() as u64;
                        let room = max.saturating_sub(kept.len());
                        kept.extend(batch.documents.into_iter().take(room).enumerate().map(
                            |(i, d)| {
                                let index = batch.first_index + i as u64;
                                as_stored(&tenant_id, DRY_RUN_SOURCE, index, d)
                            },
                        ));
                    }
                    (kept, total)
                });
                let input = BatchInput {
                    name: DRY_RUN_SOURCE.to_owned(),
                    size: input.len() as u64,
                    content_type: None,
                    reader: Box::new(std::io::Cursor::new(input.into_bytes())),
                };
                let result = self.runtime.run_batch(&app, input, &options, sink).await;
                let (kept, total) = collect
                    .await
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("dry run collector: {e}")))?;
                run.documents = kept;
                run.documents_total = total;
                match result {
                    Ok(report) => {
                        run.quality = Some(report.quality);
                        run.usage = report.usage;
                    }
                    Err(failure) => {
                        run.usage = (*failure.usage).clone();
                        run.failure = Some((failure.class, failure.message));
                    }
                }
            }
            AppKind::Stream => {
                let messages: Vec<Message> = input
                    .lines()
                    .enumerate()
                    .map(|(i, line)| Message {
                        id: format!("dry-run-{i}"),
                        payload: line.as_bytes().to_vec(),
                        content_type: None,
                        headers: Vec::new(),
                        attempt: 1,
                    })
                    .collect();
                match self.runtime.run_stream(&app, &messages, &options).await {
                    Ok(report) => {
                        for outcome in report.outcomes {
                            match outcome {
                                Ok(documents) => {
                                    run.documents_total += documents.len() as u64;
                                    let room = max.saturating_sub(run.documents.len());
                                    let id = &messages[run.messages.len()].id;
                                    run.documents.extend(
                                        documents
                                            .into_iter()
                                            .take(room)
                                            .enumerate()
                                            .map(|(i, d)| as_stored(&tenant.id, id, i as u64, d)),
                                    );
                                    run.messages.push(None);
                                }
                                Err(failure) => {
                                    run.messages.push(Some((failure.class, failure.message)))
                                }
                            }
                        }
                        run.usage = report.usage;
                    }
                    Err(failure) => {
                        run.usage = (*failure.usage).clone();
                        run.failure = Some((failure.class, failure.message));
                    }
                }
            }
        }
        run.duration = started.elapsed();
        Ok(run)
    }
}

/// What a dry run produced.
#[derive(Debug, Default)]
pub struct DryRun {
    /// The first documents, as JSON text.
    pub documents: Vec<String>,
    /// How many documents the app emitted in all.
    pub documents_total: u64,
    /// A batch app's quality report.
    pub quality: Option<crate::runtime::Quality>,
    /// A stream app's outcome per message: `None` for success.
    pub messages: Vec<Option<(FailureClass, String)>>,
    /// The call's failure, if it failed as a whole.
    pub failure: Option<(FailureClass, String)>,
    /// What the call used.
    pub usage: Usage,
    /// Wall-clock time, loading included.
    pub duration: Duration,
}

/// The admission probe, the same at upload and in `app check`: instantiate the app and call it once on an empty input under a
/// small budget. The app may answer `reject` or `retry` (its own typed answers); a trap
/// or any limit violation refuses the upload, so a component that would fail every call
/// never reaches a worker.
pub async fn admission_probe(
    runtime: &Runtime,
    config: &AppsConfig,
    app: &App,
    tenant: &str,
    name: &str,
    limits: &SandboxLimits,
) -> Result<Usage, Failure> {
    let mut limits = limits.clone();
    limits.fuel = limits.fuel.min(config.probe_fuel);
    limits.fuel_per_input_byte = 0;
    limits.deadline_ms = limits.deadline_ms.min(config.probe_deadline_ms);
    let options = CallOptions {
        label: format!("{tenant}/{name}@{} (admission probe)", short(&app.digest)),
        params: Arc::new(BTreeMap::new()),
        limits,
    };
    let refused = |failure: Failure| Failure {
        message: format!(
            "the app failed its admission probe (one call on an empty input): {}: {}",
            failure.class, failure.message
        ),
        ..failure
    };
    let outcome = match app.kind {
        AppKind::Batch => {
            let (sink, mut documents) = mpsc::channel::<OutputBatch>(4);
            let drain = tokio::spawn(async move { while documents.recv().await.is_some() {} });
            let input = BatchInput {
                name: "admission-probe".to_owned(),
                size: 0,
                content_type: None,
                reader: Box::new(tokio::io::empty()),
            };
            let result = runtime.run_batch(app, input, &options, sink).await;
            drain.abort();
            result.map(|report| report.usage)
        }
        AppKind::Stream => {
            let message = Message {
                id: "admission-probe".to_owned(),
                payload: Vec::new(),
                content_type: None,
                headers: Vec::new(),
                attempt: 1,
            };
            runtime
                .run_stream(app, std::slice::from_ref(&message), &options)
                .await
                .and_then(|report| match report.outcomes.into_iter().next() {
                    Some(Err(failure)) if !is_typed_answer(failure.class) => Err(failure),
                    _ => Ok(report.usage),
                })
        }
    };
    match outcome {
        Ok(usage) => Ok(usage),
        Err(failure) if is_typed_answer(failure.class) => Ok(*failure.usage),
        Err(failure) => Err(refused(failure)),
    }
}

/// The representative-input probe, the same at upload and in `app check --sample`: one call on the tenant's sample under exactly the
/// limits the version will run with (scaled to the sample's size, as a real call's are).
/// Any failure refuses the upload with the app's class and message: the call's own, a
/// message's (stream), or a document the sink would refuse (`bad-output`).
pub async fn sample_probe(
    runtime: &Runtime,
    app: &App,
    tenant: &str,
    name: &str,
    limits: &SandboxLimits,
    sample: &[u8],
) -> Result<(), Failure> {
    let options = CallOptions {
        label: format!("{tenant}/{name}@{} (sample probe)", short(&app.digest)),
        params: Arc::new(BTreeMap::new()),
        limits: limits.clone(),
    };
    let refused = |class: FailureClass, message: String, usage: Usage| Failure {
        class,
        message: format!(
            "the app failed on the upload's sample ({} bytes) under the limits it will run \
             with: {class}: {message}",
            sample.len()
        ),
        usage: Box::new(usage),
    };
    match app.kind {
        AppKind::Batch => {
            // Ids as a job of this version would derive them (their length counts towards
            // the document size limit).
            let ids = IdScheme::CURRENT.ids(tenant, SAMPLE_SOURCE);
            let (sink, mut batches) = mpsc::channel::<OutputBatch>(4);
            // Every document is converted as the sink would: the first it would refuse
            // refuses the upload.
            let check = tokio::spawn(async move {
                let mut first_bad = None;
                while let Some(batch) = batches.recv().await {
                    for (i, d) in batch.documents.iter().enumerate() {
                        let index = batch.first_index + i as u64;
                        if first_bad.is_none()
                            && let Err(reason) =
                                crate::documents::to_stored(&d.json, d.id.as_deref(), || {
                                    ids.id(index)
                                })
                        {
                            first_bad = Some(format!("document {index}: {reason}"));
                        }
                    }
                }
                first_bad
            });
            let input = BatchInput {
                name: SAMPLE_SOURCE.to_owned(),
                size: sample.len() as u64,
                content_type: None,
                reader: Box::new(std::io::Cursor::new(sample.to_vec())),
            };
            let result = runtime.run_batch(app, input, &options, sink).await;
            let first_bad = check
                .await
                .map_err(|e| Failure::new(FailureClass::HostError, format!("sample probe: {e}")))?;
            match result {
                Err(failure) => Err(refused(failure.class, failure.message, *failure.usage)),
                Ok(report) => match first_bad {
                    Some(reason) => Err(refused(FailureClass::BadOutput, reason, report.usage)),
                    None => Ok(()),
                },
            }
        }
        AppKind::Stream => {
            let messages = sample_messages(sample);
            let report = runtime
                .run_stream(app, &messages, &options)
                .await
                .map_err(|f| refused(f.class, f.message, (*f.usage).clone()))?;
            for (outcome, message) in report.outcomes.iter().zip(&messages) {
                let documents = match outcome {
                    Ok(documents) => documents,
                    // A message the app rejects is its decision about that message (in
                    // production it is dead-lettered with the reason), not a failure of the app.
                    Err(failure) if failure.class == FailureClass::Reject => continue,
                    Err(failure) => {
                        return Err(refused(
                            failure.class,
                            format!("message {}: {}", message.id, failure.message),
                            report.usage.clone(),
                        ));
                    }
                };
                let ids = IdScheme::CURRENT.message_ids(tenant, SAMPLE_SOURCE, &message.id);
                for (n, d) in documents.iter().enumerate() {
                    crate::documents::to_stored(&d.json, d.id.as_deref(), || ids.id(n as u64))
                        .map_err(|reason| {
                            refused(
                                FailureClass::BadOutput,
                                format!("message {} document {n}: {reason}", message.id),
                                report.usage.clone(),
                            )
                        })?;
                }
            }
            Ok(())
        }
    }
}

/// The source name of a dry run's input, from which its documents' ids derive.
const DRY_RUN_SOURCE: &str = "dry-run";
/// The source name of an upload's sample.
const SAMPLE_SOURCE: &str = "upload-sample";

/// A stream app's sample: one message per non-empty line.
fn sample_messages(sample: &[u8]) -> Vec<Message> {
    sample
        .split(|&b| b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .enumerate()
        .map(|(i, line)| Message {
            id: format!("{SAMPLE_SOURCE}-{i}"),
            payload: line.to_vec(),
            content_type: None,
            headers: Vec::new(),
            attempt: 1,
        })
        .collect()
}

/// A document as the sink would store it: with its `_id` (the app's, or derived). A document
/// the sink would refuse is shown as the app emitted it.
fn as_stored(tenant: &str, source: &str, index: u64, document: crate::runtime::Document) -> String {
    let ids = IdScheme::CURRENT.ids(tenant, source);
    crate::documents::stored_json(&ids, index, &document.json, document.id.as_deref())
        .unwrap_or(document.json)
}

/// The app's own answers: not a reason to refuse it.
fn is_typed_answer(class: FailureClass) -> bool {
    matches!(class, FailureClass::Reject | FailureClass::Retry)
}

/// The first 12 hex digits of a digest, for labels.
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
