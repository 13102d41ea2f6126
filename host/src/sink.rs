//! Where a tenant's documents go: the shared coredms with a database per tenant, or a
//! dedicated coredms published for the tenant in the registry. Resolved once, cached, and
//! re-resolved when the registry entry changes (an etcd watch) or the profile does, so a moved
//! coredms takes new writes without restarting any host.

use crate::config::{SinkConfig, redact_uri};
use crate::platform::TenantRecord;
use crate::profile::{CoredmsMode, WriteConcern};
use crate::registry::{Registry, ServiceInfo, ServiceKind, read_secret};
use mongodb::bson::{RawDocumentBuf, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Attempts at resolving (registry read, connect, ping) before giving up.
const ATTEMPTS: u32 = 3;
/// How long a coredms may take to answer its first ping.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a tenant's sink cannot be used now. Messages are safe to show the tenant.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The profile asks for a dedicated coredms and the registry has none usable.
    #[error(
        "no usable dedicated coredms is published for tenant {tenant:?} under {key}; ask the operator to publish one"
    )]
    Missing {
        /// The tenant.
        tenant: String,
        /// Where it was looked for.
        key: String,
    },
    /// The coredms (or the registry) did not answer.
    #[error("{0}")]
    Unreachable(String),
}

// Where a sink points is part of the API (write results): it lives in the API types crate.
pub use mysimbdp_api::SinkTarget;

/// A resolved sink: a database handle and where it points.
pub struct Sink {
    /// The tenant's database.
    pub database: Database,
    /// What it resolved to.
    pub target: SinkTarget,
    profile_version: i64,
}

/// What one unordered bulk insert did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Documents written now.
    pub inserted: u64,
    /// Documents whose `_id` was already there: a replay, success in effect.
    pub duplicates: u64,
    /// Documents MongoDB refused, by position in the batch, with its reason.
    pub refused: Vec<(usize, String)>,
}

impl Sink {
    /// A sink straight onto `database` (tools and benchmarks; hosts resolve theirs).
    pub fn direct(database: Database) -> Self {
        let target = SinkTarget {
            coredms: "direct".to_owned(),
            service_id: None,
            uri: String::new(),
            database: database.name().to_owned(),
        };
        Self {
            database,
            target,
            profile_version: 0,
        }
    }

    /// Writes `documents` with one unordered `insert_many` under `concern`. Duplicate keys
    /// count as success (deterministic ids make replays harmless); a document MongoDB refuses
    /// does not stop the others. An `Err` is an infrastructure failure (unreachable, write
    /// concern not met): the caller retries the whole batch, which the ids make safe.
    pub async fn insert<T>(
        &self,
        collection: &str,
        documents: Vec<T>,
        concern: WriteConcern,
    ) -> Result<InsertOutcome, mongodb::error::Error>
    where
        T: serde::Serialize + Send + Sync,
    {
        let count = documents.len() as u64;
        if count == 0 {
            return Ok(InsertOutcome::default());
        }
        let concern = match concern {
            WriteConcern::Majority => mongodb::options::WriteConcern::majority(),
            WriteConcern::Primary => mongodb::options::WriteConcern::nodes(1),
        };
        let collection = self.database.collection::<T>(collection);
        let written = collection
            .insert_many(&documents)
            .ordered(false)
            .write_concern(concern.clone())
            .await;
        match written {
            Ok(result) => Ok(InsertOutcome {
                inserted: result.inserted_ids.len() as u64,
                ..InsertOutcome::default()
            }),
            Err(e) => match e.kind.as_ref() {
                ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                    let mut outcome = InsertOutcome::default();
                    let errors = failure.write_errors.as_deref().unwrap_or_default();
                    for error in errors {
                        if error.code == DUPLICATE_KEY {
                            outcome.duplicates += 1;
                        } else {
                            outcome.refused.push((error.index, error.message.clone()));
                        }
                    }
                    outcome.inserted = count.saturating_sub(errors.len() as u64);
                    Ok(outcome)
                }
                // The batch as a whole cannot be sent (a document the driver cannot encode):
                // the same would happen on every retry, so it is not an outage. Find the
                // guilty documents one by one; the others are written.
                _ if is_deterministic(&e) => {
                    let mut outcome = InsertOutcome::default();
                    for (index, document) in documents.iter().enumerate() {
                        match collection
                            .insert_one(document)
                            .write_concern(concern.clone())
                            .await
                        {
                            Ok(_) => outcome.inserted += 1,
                            Err(e) if is_duplicate(&e) => outcome.duplicates += 1,
                            Err(e) if is_deterministic(&e) || is_write_error(&e) => {
                                outcome.refused.push((index, deterministic_reason(&e)));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(outcome)
                }
                _ => Err(e),
            },
        }
    }
}

/// Whether a write error would repeat identically on retry: the request itself cannot be
/// encoded or is refused as invalid, whatever the state of the coredms.
pub fn is_deterministic(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. }
    )
}

fn is_duplicate(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

fn is_write_error(error: &mongodb::error::Error) -> bool {
    matches!(
        error.kind.as_ref(),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(_))
    )
}

/// A reason for a refused document, without the server's reply around it.
fn deterministic_reason(error: &mongodb::error::Error) -> String {
    match error.kind.as_ref() {
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.message.clone(),
        ErrorKind::InvalidArgument { message, .. } => message.clone(),
        ErrorKind::BsonSerialization(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}

/// Why a bulk write stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The coredms failed (unreachable, write concern not met): retry the whole input.
    #[error("writing to the coredms: {0}")]
    Infra(#[source] mongodb::error::Error),
}

/// A document the coredms refused: its position in the input and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its position in the input.
    pub index: u64,
    /// Why.
    pub reason: String,
}

/// Refusals kept with their reasons; past this only counted.
const MAX_KEPT_REFUSALS: usize = 100;

/// Turns a stream of stored documents into unordered `insert_many` calls of at most `batch`
/// documents and `max_bytes` of BSON, so what a job or stream batch holds in memory is bounded
/// by bytes whatever the documents' shape. A document the coredms refuses is counted and kept
/// with its reason (the first [`MAX_KEPT_REFUSALS`]); the others are written.
pub struct BulkWriter {
    sink: Arc<Sink>,
    collection: String,
    concern: WriteConcern,
    batch: usize,
    max_bytes: usize,
    keep_refusals: usize,
    pending: Vec<RawDocumentBuf>,
    pending_bytes: usize,
    positions: Vec<u64>,
    /// Documents written now.
    pub inserted: u64,
    /// Documents already there (a replay).
    pub duplicates: u64,
    /// Documents refused, in all.
    pub refused: u64,
    /// The first refusals, with reasons.
    pub refusals: Vec<Refusal>,
}

impl BulkWriter {
    /// A writer into `collection` of `sink`, holding at most `batch` documents and `max_bytes`
    /// of BSON before it writes.
    pub fn new(
        sink: Arc<Sink>,
        collection: String,
        concern: WriteConcern,
        batch: usize,
        max_bytes: usize,
    ) -> Self {
        let batch = batch.max(1);
        Self {
            sink,
            collection,
            concern,
            batch,
            max_bytes: max_bytes.max(1),
            keep_refusals: MAX_KEPT_REFUSALS,
            pending: Vec::new(),
            pending_bytes: 0,
            positions: Vec::new(),
            inserted: 0,
            duplicates: 0,
            refused: 0,
            refusals: Vec::new(),
        }
    }

    /// Keeps every refusal with its reason, for a caller that traces each one back to its
    /// message (a stream batch: bounded by the batch's documents).
    #[must_use]
    pub fn keeping_every_refusal(mut self) -> Self {
        self.keep_refusals = usize::MAX;
        self
    }

    /// Counts a document refused before it reached the writer (it cannot be stored as
    /// emitted).
    pub fn refuse(&mut self, index: u64, reason: String) {
        self.refused += 1;
        if self.refusals.len() < self.keep_refusals {
            self.refusals.push(Refusal { index, reason });
        }
    }

    /// Adds the document at `index` of the input; writes when the batch is full by count or
    /// by bytes.
    pub async fn push(&mut self, index: u64, document: RawDocumentBuf) -> Result<(), WriteError> {
        self.pending_bytes += document.as_bytes().len();
        self.pending.push(document);
        self.positions.push(index);
        if self.pending.len() >= self.batch || self.pending_bytes >= self.max_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes what is pending.
    pub async fn flush(&mut self) -> Result<(), WriteError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let documents = std::mem::take(&mut self.pending);
        let positions = std::mem::take(&mut self.positions);
        self.pending_bytes = 0;
        let outcome = self
            .sink
            .insert(&self.collection, documents, self.concern)
            .await
            .map_err(WriteError::Infra)?;
        self.inserted += outcome.inserted;
        self.duplicates += outcome.duplicates;
        for (at, reason) in outcome.refused {
            let index = positions.get(at).copied().unwrap_or_default();
            self.refuse(index, format!("the coredms refused it: {reason}"));
        }
        Ok(())
    }
}

/// A document as the sink stores it: the app's JSON as BSON with its `_id` (the app's own,
/// or derived from tenant, source and position), by the one rule of
/// [`crate::documents::to_stored`].
pub fn stored_document(
    tenant: &str,
    source: &str,
    index: u64,
    json: &str,
    id: Option<&str>,
) -> Result<RawDocumentBuf, String> {
    crate::documents::to_stored(json, id, || {
        crate::documents::derived_id(tenant, source, index)
    })
}

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Resolves and caches tenants' sinks. One per host.
pub struct SinkResolver {
    registry: Registry,
    write_buffer_bytes: usize,
    shared_uri: String,
    clients: Mutex<HashMap<String, Client>>,
    sinks: Mutex<HashMap<String, Arc<Sink>>>,
    /// Bumped by every registry change seen: a resolution that raced one is not cached.
    generation: AtomicU64,
}

impl SinkResolver {
    /// A resolver over the registry; the watch that keeps it current runs until the returned
    /// resolver is dropped.
    pub fn start(registry: Registry, config: &SinkConfig) -> Arc<Self> {
        let resolver = Arc::new(Self {
            registry,
            write_buffer_bytes: usize::try_from(config.write_buffer_mib * 1024 * 1024)
                .unwrap_or(usize::MAX),
            shared_uri: config.mongodb_uri.clone(),
            clients: Mutex::default(),
            sinks: Mutex::default(),
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&resolver);
        tokio::spawn(async move { watch(weak).await });
        resolver
    }

    /// The sink of `tenant` now.
    pub async fn resolve(&self, tenant: &TenantRecord) -> Result<Arc<Sink>, SinkError> {
        if let Some(sink) = self.cached(&tenant.id)
            && sink.profile_version == tenant.profile_version
        {
            return Ok(sink);
        }
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let generation = self.generation.load(Ordering::SeqCst);
            match self.resolve_now(tenant).await {
                Ok(sink) => {
                    let sink = Arc::new(sink);
                    if let Ok(mut sinks) = self.sinks.lock()
                        && self.generation.load(Ordering::SeqCst) == generation
                    {
                        sinks.insert(tenant.id.clone(), sink.clone());
                    }
                    return Ok(sink);
                }
                Err(e @ SinkError::Missing { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(tenant = %tenant.id, attempt, error = %e, "resolving the sink failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| SinkError::Unreachable("unknown".to_owned())))
    }

    /// Bytes of BSON a writer holds before it writes (`sink.write_buffer_mib`).
    pub fn write_buffer_bytes(&self) -> usize {
        self.write_buffer_bytes
    }

    /// Forgets a tenant's sink; the next use resolves it again.
    pub fn forget(&self, tenant: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut sinks) = self.sinks.lock() {
            sinks.remove(tenant);
        }
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Sink>> {
        self.sinks.lock().ok()?.get(tenant).cloned()
    }

    async fn resolve_now(&self, tenant: &TenantRecord) -> Result<Sink, SinkError> {
        let mode = tenant.profile.sink.coredms;
        let dedicated = match mode {
            CoredmsMode::Shared => None,
            CoredmsMode::Auto | CoredmsMode::Dedicated => self.dedicated(&tenant.id).await?,
        };
        let (target, client) = match dedicated {
            Some(info) => {
                let database = info.endpoints.database.clone().unwrap_or_default();
                let client = self
                    .client(&info.endpoints.uri, info.secret_ref.as_deref())
                    .await?;
                let target = SinkTarget {
                    coredms: "dedicated".to_owned(),
                    service_id: Some(info.id.clone()),
                    uri: redact_uri(&info.endpoints.uri),
                    database,
                };
                (target, client)
            }
            None if mode == CoredmsMode::Dedicated => {
                return Err(SinkError::Missing {
                    tenant: tenant.id.clone(),
                    key: self
                        .registry
                        .service_key(&tenant.id, ServiceKind::Coredms, ""),
                });
            }
            None => {
                let client = self.client(&self.shared_uri, None).await?;
                let target = SinkTarget {
                    coredms: "shared".to_owned(),
                    service_id: None,
                    uri: redact_uri(&self.shared_uri),
                    database: tenant.profile.database(&tenant.id),
                };
                (target, client)
            }
        };
        let database = client.database(&target.database);
        tokio::time::timeout(PING_TIMEOUT, database.run_command(doc! { "ping": 1 }))
            .await
            .map_err(|_| {
                SinkError::Unreachable(format!(
                    "the {} coredms at {} did not answer within {PING_TIMEOUT:?}",
                    target.coredms, target.uri
                ))
            })?
            .map_err(|e| {
                SinkError::Unreachable(format!(
                    "the {} coredms at {} is unreachable: {e}",
                    target.coredms, target.uri
                ))
            })?;
        tracing::info!(tenant = %tenant.id, coredms = %target.coredms, uri = %target.uri, database = %target.database, "sink resolved");
        Ok(Sink {
            database,
            target,
            profile_version: tenant.profile_version,
        })
    }

    /// The tenant's usable dedicated coredms: healthy before degraded, then by id.
    async fn dedicated(&self, tenant: &str) -> Result<Option<ServiceInfo>, SinkError> {
        let mut entries = self
            .registry
            .list(Some(tenant), Some(ServiceKind::Coredms))
            .await
            .map_err(|e| SinkError::Unreachable(format!("the service registry: {e:#}")))?;
        entries.retain(|e| e.usable() && e.validate().is_ok());
        entries.sort_by_key(|e| {
            (
                e.status != crate::registry::ServiceStatus::Healthy,
                e.id.clone(),
            )
        });
        Ok(entries.into_iter().next())
    }

    /// One client per URI and secret: clients pool connections and are shared by tenants on
    /// the same server.
    async fn client(&self, uri: &str, secret_ref: Option<&str>) -> Result<Client, SinkError> {
        let key = format!("{uri}\u{0}{}", secret_ref.unwrap_or_default());
        if let Some(client) = self.clients.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(client);
        }
        let shown = redact_uri(uri);
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| SinkError::Unreachable(format!("coredms URI {shown}: {e}")))?;
        options.app_name = Some("mysimbdp-sink".to_owned());
        options.server_selection_timeout.get_or_insert(PING_TIMEOUT);
        if let Some(reference) = secret_ref {
            let secret = read_secret(reference).map_err(SinkError::Unreachable)?;
            let credential = options.credential.get_or_insert_with(Default::default);
            credential.password = Some(secret);
        }
        let client = Client::with_options(options)
            .map_err(|e| SinkError::Unreachable(format!("coredms {shown}: {e}")))?;
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(key, client.clone());
        }
        Ok(client)
    }
}

/// Invalidates cached sinks when a tenant's registry entries change. If the watch breaks,
/// everything is forgotten (nothing stale survives a missed event) and the watch restarts.
async fn watch(resolver: std::sync::Weak<SinkResolver>) {
    loop {
        let Some(current) = resolver.upgrade() else {
            return;
        };
        let registry = current.registry.clone();
        drop(current);
        match registry.watch_services().await {
            Ok(mut stream) => {
                while let Ok(Some(response)) = stream.message().await {
                    let Some(resolver) = resolver.upgrade() else {
                        return;
                    };
                    for event in response.events() {
                        let key = event
                            .kv()
                            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                            .unwrap_or_default();
                        if let Some(tenant) = registry.tenant_of_key(&key) {
                            tracing::info!(%tenant, %key, "registry entry changed; the sink will be resolved again");
                            resolver.forget(tenant);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot watch the registry"),
        }
        if let Some(resolver) = resolver.upgrade() {
            resolver.generation.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut sinks) = resolver.sinks.lock() {
                sinks.clear();
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
