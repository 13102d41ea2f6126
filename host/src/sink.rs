//! Where a tenant's documents go: the shared coredms with a database per tenant, or a
//! dedicated coredms published for the tenant in the registry. Resolved once, cached, and
//! re-resolved when the registry entry changes (an etcd watch) or the profile does, so a moved
//! coredms takes new writes without restarting any host.
//!
//! # While etcd is away
//!
//! The registry is needed to *find* a dedicated coredms, not to write to it, so an etcd outage
//! must not stop writes:
//! - a broken watch drops nothing: cached sinks keep serving;
//! - a resolution that needs the registry (profile `auto` or `dedicated`) while etcd does not
//!   answer uses the last answer the registry gave for that tenant on this host, if there is
//!   one (a sink forgotten after a coredms write failure is resolved again from it); with none
//!   it fails as an unreachable sink (transient: the caller retries);
//! - once the watch is back, every tenant's last known answer is compared with the registry
//!   (one read of every tenant's coredms entries) before any event is taken, and the sinks
//!   whose answer changed are forgotten. Until that read succeeds the watch is retried.
//!
//! Staleness bound: a sink can point where the registry no longer says only if the registry
//! changed while this host could not watch it (etcd down, or a partition between this host
//! and etcd while others could still publish). It lasts as long as this host cannot reach
//! etcd, plus the time to notice the watch broke (at once when etcd's connection closes; at
//! most the keep-alive's 10 s + 5 s in a silent partition), plus one watch retry (1 s) and
//! one registry read. While the watch is up, a change is seen within its delivery time. A
//! host started while etcd is down knows nothing: `serve` refuses to start without etcd.

use crate::config::{SinkConfig, redact_uri};
use crate::documents::DerivedIds;
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
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Attempts at resolving (registry read, connect, ping) before giving up.
const ATTEMPTS: u32 = 3;
/// How long a coredms may take to answer its first ping.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause before the registry watch is tried again after it broke or could not start.
const WATCH_RETRY: Duration = Duration::from_secs(1);

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
/// documents, with up to `writes_in_flight` of them in flight at once (deterministic ids and
/// unordered inserts make their order irrelevant), so the coredms works on one batch while the
/// host converts the next. `max_bytes` of BSON bound what the writer holds in all — the batch
/// being filled and every batch in flight — whatever the documents' shape. A document the
/// coredms refuses is counted and kept with its reason (the first [`MAX_KEPT_REFUSALS`]); the
/// others are written.
pub struct BulkWriter {
    sink: Arc<Sink>,
    collection: Arc<str>,
    concern: WriteConcern,
    batch: usize,
    /// The whole budget, pending and in flight.
    max_bytes: usize,
    /// The budget of one batch: `max_bytes` shared by the batches in flight and the pending one.
    batch_bytes: usize,
    writes_in_flight: usize,
    keep_refusals: usize,
    pending: Vec<RawDocumentBuf>,
    pending_bytes: usize,
    positions: Vec<u64>,
    in_flight: JoinSet<Written>,
    /// Documents written now.
    pub inserted: u64,
    /// Documents already there (a replay).
    pub duplicates: u64,
    /// Documents refused, in all.
    pub refused: u64,
    /// The first refusals, with reasons.
    pub refusals: Vec<Refusal>,
}

/// One `insert_many` that came back: the input positions of its documents and what it did.
type Written = (Vec<u64>, Result<InsertOutcome, mongodb::error::Error>);

impl BulkWriter {
    /// A writer into `collection` of `sink`, holding at most `batch` documents per insert and
    /// `max_bytes` of BSON in all; one write in flight until [`Self::writes_in_flight`] says
    /// otherwise.
    pub fn new(
        sink: Arc<Sink>,
        collection: String,
        concern: WriteConcern,
        batch: usize,
        max_bytes: usize,
    ) -> Self {
        let max_bytes = max_bytes.max(1);
        Self {
            sink,
            collection: collection.into(),
            concern,
            batch: batch.max(1),
            max_bytes,
            batch_bytes: max_bytes,
            writes_in_flight: 1,
            keep_refusals: MAX_KEPT_REFUSALS,
            pending: Vec::new(),
            pending_bytes: 0,
            positions: Vec::new(),
            in_flight: JoinSet::new(),
            inserted: 0,
            duplicates: 0,
            refused: 0,
            refusals: Vec::new(),
        }
    }

    /// Lets up to `writes` inserts be in flight at once (at least 1). The byte budget is then
    /// shared: each batch holds at most `max_bytes / (writes + 1)`, so the batches in flight
    /// and the one being filled stay within it together.
    #[must_use]
    pub fn writes_in_flight(mut self, writes: usize) -> Self {
        self.writes_in_flight = writes.max(1);
        self.batch_bytes = (self.max_bytes / (self.writes_in_flight + 1)).max(1);
        self
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

    /// Adds the document at `index` of the input; sends a write when the batch is full by
    /// count or by bytes, first waiting for one in flight if `writes_in_flight` are.
    pub async fn push(&mut self, index: u64, document: RawDocumentBuf) -> Result<(), WriteError> {
        self.pending_bytes += document.as_bytes().len();
        self.pending.push(document);
        self.positions.push(index);
        if self.pending.len() >= self.batch || self.pending_bytes >= self.batch_bytes {
            self.send().await?;
        }
        Ok(())
    }

    /// Writes what is pending and waits for every write in flight. An `Err` is the first
    /// infrastructure failure among them (the caller retries; the ids make that safe).
    pub async fn flush(&mut self) -> Result<(), WriteError> {
        self.send().await?;
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Sends the pending batch as one insert, once fewer than `writes_in_flight` are out.
    async fn send(&mut self) -> Result<(), WriteError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= self.writes_in_flight {
            self.settle_one().await?;
        }
        let documents = std::mem::take(&mut self.pending);
        let positions = std::mem::take(&mut self.positions);
        self.pending_bytes = 0;
        let (sink, collection, concern) =
            (self.sink.clone(), self.collection.clone(), self.concern);
        self.in_flight.spawn(async move {
            let outcome = sink.insert(&collection, documents, concern).await;
            (positions, outcome)
        });
        Ok(())
    }

    /// Waits for one write in flight and counts what it did.
    async fn settle_one(&mut self) -> Result<(), WriteError> {
        let Some(joined) = self.in_flight.join_next().await else {
            return Ok(());
        };
        let (positions, outcome) = match joined {
            Ok(written) => written,
            // A write task only ends early by panicking inside the driver: re-raise it here,
            // where the job's own task reports it, rather than hide a lost batch.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let outcome = outcome.map_err(WriteError::Infra)?;
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
/// or the one `ids` derives from its position), by the one rule of
/// [`crate::documents::to_stored`].
pub fn stored_document(
    ids: &DerivedIds,
    index: u64,
    json: &str,
    id: Option<&str>,
) -> Result<RawDocumentBuf, String> {
    crate::documents::to_stored(json, id, || ids.id(index))
}

/// MongoDB's duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// Resolves and caches tenants' sinks. One per host.
pub struct SinkResolver {
    registry: Registry,
    write_buffer_bytes: usize,
    writes_in_flight: usize,
    shared_uri: String,
    clients: Mutex<HashMap<String, Client>>,
    sinks: Mutex<HashMap<String, Arc<Sink>>>,
    /// The registry's last answer per tenant: the fallback while etcd does not answer.
    known: Mutex<HashMap<String, Known>>,
    /// Bumped by every registry change seen: a resolution that raced one is not cached.
    generation: AtomicU64,
}

/// What the registry last said about a tenant's dedicated coredms, and when.
#[derive(Debug, Clone)]
struct Known {
    dedicated: Option<ServiceInfo>,
    at: Instant,
}

/// Where a resolution takes the tenant's dedicated coredms from.
#[derive(Debug, PartialEq)]
enum Lookup {
    /// The registry answered now.
    Fresh(Option<ServiceInfo>),
    /// The registry did not answer; its last answer, given `age` ago.
    Stale {
        dedicated: Option<ServiceInfo>,
        age: Duration,
    },
}

/// The registry's answer now if it gave one, else its last known answer for the tenant,
/// else the failure (transient: the sink is unreachable, not missing).
fn decide(
    answer: Result<Option<ServiceInfo>, String>,
    last_known: Option<&Known>,
    now: Instant,
) -> Result<Lookup, SinkError> {
    match (answer, last_known) {
        (Ok(dedicated), _) => Ok(Lookup::Fresh(dedicated)),
        (Err(_), Some(known)) => Ok(Lookup::Stale {
            dedicated: known.dedicated.clone(),
            age: now.saturating_duration_since(known.at),
        }),
        (Err(e), None) => Err(SinkError::Unreachable(format!("the service registry: {e}"))),
    }
}

/// The usable dedicated coredms among a tenant's entries: healthy before degraded, then by
/// id.
fn usable_dedicated(mut entries: Vec<ServiceInfo>) -> Option<ServiceInfo> {
    entries.retain(|e| e.usable() && e.validate().is_ok());
    entries.sort_by_key(|e| {
        (
            e.status != crate::registry::ServiceStatus::Healthy,
            e.id.clone(),
        )
    });
    entries.into_iter().next()
}

/// Whether two answers lead writes to the same place: the same entry, address, database and
/// credentials (a changed status or timestamp alone moves nothing).
fn same_coredms(before: Option<&ServiceInfo>, now: Option<&ServiceInfo>) -> bool {
    let place = |info: Option<&ServiceInfo>| {
        info.map(|i| {
            (
                i.id.clone(),
                i.endpoints.uri.clone(),
                i.endpoints.database.clone(),
                i.secret_ref.clone(),
            )
        })
    };
    place(before) == place(now)
}

impl SinkResolver {
    /// A resolver over the registry; the watch that keeps it current runs until the returned
    /// resolver is dropped.
    pub fn start(registry: Registry, config: &SinkConfig) -> Arc<Self> {
        let resolver = Arc::new(Self {
            registry,
            write_buffer_bytes: usize::try_from(config.write_buffer_mib * 1024 * 1024)
                .unwrap_or(usize::MAX),
            writes_in_flight: config.writes_in_flight,
            shared_uri: config.mongodb_uri.clone(),
            clients: Mutex::default(),
            sinks: Mutex::default(),
            known: Mutex::default(),
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

    /// Inserts a batch job keeps in flight (`sink.writes_in_flight`).
    pub fn writes_in_flight(&self) -> usize {
        self.writes_in_flight
    }

    /// Forgets a tenant's sink; the next use resolves it again (from the registry, or from
    /// the registry's last answer if etcd does not answer then).
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
            CoredmsMode::Auto | CoredmsMode::Dedicated => self.lookup(&tenant.id).await?,
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

    /// The tenant's usable dedicated coredms, as the registry says now or, if it does not
    /// answer, as it last said.
    async fn lookup(&self, tenant: &str) -> Result<Option<ServiceInfo>, SinkError> {
        let answer = self
            .registry
            .list(Some(tenant), Some(ServiceKind::Coredms))
            .await
            .map(usable_dedicated)
            .map_err(|e| format!("{e:#}"));
        let unreachable = answer.as_ref().err().cloned();
        let last = self.known.lock().ok().and_then(|k| k.get(tenant).cloned());
        match decide(answer, last.as_ref(), Instant::now())? {
            Lookup::Fresh(dedicated) => {
                if let Ok(mut known) = self.known.lock() {
                    known.insert(
                        tenant.to_owned(),
                        Known {
                            dedicated: dedicated.clone(),
                            at: Instant::now(),
                        },
                    );
                }
                Ok(dedicated)
            }
            Lookup::Stale { dedicated, age } => {
                tracing::warn!(
                    %tenant, ?age, error = unreachable.as_deref().unwrap_or_default(),
                    "the service registry does not answer; using its last answer for the tenant's coredms"
                );
                Ok(dedicated)
            }
        }
    }

    /// Compares every tenant's last known answer with the registry now, forgetting the
    /// sinks whose answer changed (while the watch was away). Returns how many changed.
    async fn revalidate(&self) -> anyhow::Result<usize> {
        let tenants: Vec<(String, Option<ServiceInfo>)> = match self.known.lock() {
            Ok(known) => known
                .iter()
                .map(|(t, k)| (t.clone(), k.dedicated.clone()))
                .collect(),
            Err(_) => return Ok(0),
        };
        if tenants.is_empty() {
            return Ok(0);
        }
        let mut by_tenant: HashMap<String, Vec<ServiceInfo>> = HashMap::new();
        for entry in self.registry.list(None, Some(ServiceKind::Coredms)).await? {
            by_tenant
                .entry(entry.tenant.clone())
                .or_default()
                .push(entry);
        }
        let mut changed = 0;
        for (tenant, before) in tenants {
            let now = usable_dedicated(by_tenant.remove(&tenant).unwrap_or_default());
            if !same_coredms(before.as_ref(), now.as_ref()) {
                tracing::info!(%tenant, "the tenant's coredms changed while the registry was not watched; the sink will be resolved again");
                self.forget(&tenant);
                changed += 1;
            }
            if let Ok(mut known) = self.known.lock() {
                known.insert(
                    tenant,
                    Known {
                        dedicated: now,
                        at: Instant::now(),
                    },
                );
            }
        }
        Ok(changed)
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
/// cached sinks keep serving (etcd is needed to find a coredms, not to write to it); once a
/// new watch is up, what changed meanwhile is found by comparing (see the module doc).
async fn watch(resolver: std::sync::Weak<SinkResolver>) {
    loop {
        let Some(current) = resolver.upgrade() else {
            return;
        };
        let registry = current.registry.clone();
        drop(current);
        match registry.watch_services().await {
            Ok(mut stream) => {
                // Events from here on arrive on the stream; changes made before it started
                // are found by comparing. If the registry cannot be read, the watch starts
                // over so the comparison is not skipped.
                let Some(current) = resolver.upgrade() else {
                    return;
                };
                let revalidated = current.revalidate().await;
                drop(current);
                match revalidated {
                    Ok(changed) => {
                        tracing::debug!(changed, "watching the registry");
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
                        tracing::warn!(
                            "the registry watch broke; cached sinks keep serving and are checked \
                             against the registry when it is back"
                        );
                    }
                    Err(e) => tracing::warn!(
                        error = %format!("{e:#}"),
                        "cannot read the registry to check cached sinks; watching again"
                    ),
                }
            }
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "cannot watch the registry"),
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Endpoints, SERVICE_SCHEMA, ServiceStatus};

    fn entry(id: &str, uri: &str, status: ServiceStatus) -> ServiceInfo {
        ServiceInfo {
            schema: SERVICE_SCHEMA.to_owned(),
            tenant: "acme".to_owned(),
            kind: ServiceKind::Coredms,
            id: id.to_owned(),
            protocol: "mongodb".to_owned(),
            version: None,
            endpoints: Endpoints {
                uri: uri.to_owned(),
                database: Some("acme".to_owned()),
                replica_set: None,
                hosts: Vec::new(),
            },
            status,
            region: None,
            tags: Default::default(),
            secret_ref: None,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn a_fresh_answer_wins_over_the_last_known_one() {
        let now = Instant::now();
        let old = Known {
            dedicated: Some(entry("a", "mongodb://old:27017/", ServiceStatus::Healthy)),
            at: now,
        };
        let new = Some(entry("b", "mongodb://new:27017/", ServiceStatus::Healthy));
        assert_eq!(
            decide(Ok(new.clone()), Some(&old), now).unwrap(),
            Lookup::Fresh(new)
        );
        assert_eq!(
            decide(Ok(None), Some(&old), now).unwrap(),
            Lookup::Fresh(None)
        );
    }

    #[test]
    fn an_unreachable_registry_falls_back_to_the_last_known_answer() {
        let then = Instant::now();
        let now = then + Duration::from_secs(20);
        for dedicated in [
            None,
            Some(entry("a", "mongodb://db:27017/", ServiceStatus::Healthy)),
        ] {
            let known = Known {
                dedicated: dedicated.clone(),
                at: then,
            };
            assert_eq!(
                decide(Err("refused".to_owned()), Some(&known), now).unwrap(),
                Lookup::Stale {
                    dedicated,
                    age: Duration::from_secs(20)
                }
            );
        }
    }

    #[test]
    fn an_unreachable_registry_with_nothing_known_is_a_transient_failure() {
        let error = decide(Err("refused".to_owned()), None, Instant::now()).unwrap_err();
        assert!(
            matches!(&error, SinkError::Unreachable(m) if m.contains("refused")),
            "{error:?}"
        );
    }

    #[test]
    fn the_usable_dedicated_coredms_is_healthy_first_then_by_id() {
        let chosen = usable_dedicated(vec![
            entry("c", "mongodb://c:27017/", ServiceStatus::Degraded),
            entry("b", "mongodb://b:27017/", ServiceStatus::Healthy),
            entry("a", "mongodb://a:27017/", ServiceStatus::Degraded),
        ]);
        assert_eq!(chosen.map(|e| e.id), Some("b".to_owned()));
        let chosen = usable_dedicated(vec![
            entry("c", "mongodb://c:27017/", ServiceStatus::Degraded),
            entry("a", "mongodb://a:27017/", ServiceStatus::Degraded),
        ]);
        assert_eq!(chosen.map(|e| e.id), Some("a".to_owned()));
    }

    #[test]
    fn only_a_new_place_counts_as_a_change() {
        let before = entry("a", "mongodb://db:27017/", ServiceStatus::Healthy);
        let mut touched = before.clone();
        touched.status = ServiceStatus::Degraded;
        touched.updated_at = Some("2026-01-01T00:00:00Z".to_owned());
        assert!(same_coredms(Some(&before), Some(&touched)));
        assert!(same_coredms(None, None));
        let moved = entry("a", "mongodb://elsewhere:27017/", ServiceStatus::Healthy);
        assert!(!same_coredms(Some(&before), Some(&moved)));
        assert!(!same_coredms(Some(&before), None));
        assert!(!same_coredms(None, Some(&before)));
        let mut other_secret = before.clone();
        other_secret.secret_ref = Some("env:OTHER".to_owned());
        assert!(!same_coredms(Some(&before), Some(&other_secret)));
    }
}
