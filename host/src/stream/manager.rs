//! The consumer manager, on every host: every `stream.reconcile_ms` it reads the running
//! streams and the live hosts, and runs this host's share of each stream's consumers.
//!
//! Placement needs no coordination: a stream's consumer slots `0..desired` go round the
//! sorted list of live consumer hosts starting at a hash of the stream's id, so each host
//! computes the same assignment and streams spread over hosts. While membership changes two
//! hosts may briefly run the same slot; competing consumers on one queue make that harmless.
//!
//! Each stream with consumers here also gets a reporter that writes the host's report for
//! it every `report_interval_secs` of the tenant's profile.
//!
//! A stream whose plan cannot be read because the platform is away (the platform database,
//! the app store) keeps the consumers it has: stopping them would return their prefetched
//! messages to the queue with one more delivery counted, so the platform's outage would spend
//! the tenant's delivery attempts. Only a stream that is really gone, stopped or without a
//! usable app loses its consumers.
//!
//! The manager also runs the host's [`super::outbox`], which stores the reports and events.
//!
//! At start the manager also repairs, once, the broker side of every existing stream:
//! tenants' permissions, exchanges and publishing bindings, so vhosts provisioned under older
//! rules get today's (all idempotent; a failed pass is tried again a little later).

use super::consumer::{Consumer, Plan};
use super::stats::StreamShared;
use super::{CONSUMER_ROLE, StreamContext};
use crate::app_store::{AdmitError, short};
use crate::platform::{StoreError, StreamRecord, StreamReport, TenantRecord, TenantStatus};
use crate::runtime::{CallOptions, FailureClass};
use anyhow::Result;
use mongodb::bson::DateTime;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long stopping consumers may take to finish their batch before they are dropped.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Pause between repair passes that did not finish.
const REPAIR_RETRY: Duration = Duration::from_secs(30);
/// Repair passes at most: a vhost the broker lost cannot be repaired by waiting.
const REPAIR_PASSES: u32 = 10;

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A stream with consumers on this host.
struct Local {
    plan: watch::Sender<Arc<Plan>>,
    shared: Arc<StreamShared>,
    reporter_stop: watch::Sender<bool>,
    reporter: JoinHandle<()>,
}

/// Runs the manager until `stop`; then stops every consumer (each finishes its batch) and
/// writes the last reports.
pub async fn run(context: Arc<StreamContext>, mut stop: watch::Receiver<bool>) {
    let repair = tokio::spawn(repair(context.clone(), stop.clone()));
    // The outbox stops after the last reports below are handed over.
    let (outbox_stop, outbox_stopped) = watch::channel(false);
    let outbox = {
        let context = context.clone();
        tokio::spawn(async move { context.outbox.run(outbox_stopped).await })
    };
    let mut consumers: HashMap<(String, u32), Running> = HashMap::new();
    let mut streams: HashMap<String, Local> = HashMap::new();
    let period = Duration::from_millis(context.config.reconcile_ms);
    let mut warned = Instant::now() - Duration::from_secs(3600);
    while !*stop.borrow() {
        match wanted(&context).await {
            Ok(wanted) => apply(&context, wanted, &mut consumers, &mut streams).await,
            Err(e) if warned.elapsed() > Duration::from_secs(30) => {
                warned = Instant::now();
                tracing::warn!(error = %format!("{e:#}"), "cannot plan stream consumers; keeping the current ones");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
    }
    let keys: Vec<_> = consumers.keys().cloned().collect();
    stop_consumers(&mut consumers, keys).await;
    for (_, local) in streams.drain() {
        finish_reporter(local).await;
    }
    let _ = outbox_stop.send(true);
    let _ = outbox.await;
    let _ = repair.await;
}

/// Re-applies every stream's tenant permissions, exchanges and publishing binding, until a
/// pass goes through (or `REPAIR_PASSES`, or `stop`). Several hosts doing it at once is
/// harmless: every call is idempotent.
async fn repair(context: Arc<StreamContext>, mut stop: watch::Receiver<bool>) {
    for pass in 1..=REPAIR_PASSES {
        match repair_pass(&context).await {
            Ok(0) => return,
            Ok(failed) => tracing::warn!(
                failed,
                pass,
                "could not repair the broker side of some streams; trying again"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), pass, "cannot list streams to repair")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(REPAIR_RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One repair pass; returns how many streams failed.
async fn repair_pass(context: &StreamContext) -> Result<usize> {
    let broker = &context.broker;
    let mut by_tenant: BTreeMap<String, Vec<StreamRecord>> = BTreeMap::new();
    for stream in context.platform.all_streams().await? {
        by_tenant
            .entry(stream.tenant.clone())
            .or_default()
            .push(stream);
    }
    let mut failed = 0;
    for (tenant, streams) in by_tenant {
        if let Err(e) = broker.secure_tenant(&tenant).await {
            tracing::warn!(%tenant, error = %format!("{e:#}"), "cannot repair the tenant's broker permissions");
            failed += streams.len();
            continue;
        }
        for stream in streams {
            if let Err(e) = broker.bind_stream(&tenant, &stream.queue).await {
                tracing::warn!(stream = %stream.id, error = %format!("{e:#}"), "cannot bind the stream to the publishing exchange");
                failed += 1;
            }
        }
    }
    Ok(failed)
}

/// What this host should run now.
struct Wanted {
    /// The consumers, by (stream id, slot), with their plans.
    consumers: BTreeMap<(String, u32), Arc<Plan>>,
    /// Streams whose plan could not be read (the platform is away): their consumers here
    /// stay as they are.
    undecided: BTreeSet<String>,
}

/// A stream's plan, or why there is none.
enum Planned {
    Ready(Arc<Plan>),
    /// No usable app: its consumers stop.
    Unusable,
    /// The platform could not say (database or app store unreachable): keep what runs.
    Unknown,
}

/// The consumers this host should run now, by (stream id, slot), with their plans.
async fn wanted(context: &StreamContext) -> Result<Wanted> {
    let mut hosts: Vec<String> = context
        .registry
        .hosts()
        .await?
        .into_iter()
        .filter(|h| h.roles.iter().any(|r| r == CONSUMER_ROLE))
        .map(|h| h.id)
        .collect();
    if !hosts.contains(&context.host) {
        hosts.push(context.host.clone());
    }
    hosts.sort();
    let mut wanted = BTreeMap::new();
    let mut undecided = BTreeSet::new();
    let mut tenants: HashMap<String, Option<TenantRecord>> = HashMap::new();
    for stream in context.platform.running_streams().await? {
        if !tenants.contains_key(&stream.tenant) {
            let tenant = match context.platform.tenant(&stream.tenant).await {
                Ok(tenant) => Some(tenant),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            tenants.insert(stream.tenant.clone(), tenant);
        }
        let Some(Some(tenant)) = tenants.get(&stream.tenant) else {
            continue;
        };
        if tenant.status == TenantStatus::Suspended {
            continue;
        }
        let profile = &tenant.profile.stream;
        let desired = stream.consumers.clamp(
            profile.min_consumers_per_stream,
            profile.max_consumers_per_stream,
        );
        let mine = super::policy::slots_of(&stream.id, desired, &hosts, &context.host);
        if mine.is_empty() {
            continue;
        }
        let id = stream.id.clone();
        let plan = match plan(context, stream, tenant.clone()).await {
            Planned::Ready(plan) => plan,
            Planned::Unusable => continue,
            Planned::Unknown => {
                undecided.insert(id);
                continue;
            }
        };
        for slot in mine {
            wanted.insert((plan.stream.id.clone(), slot), plan.clone());
        }
    }
    Ok(Wanted {
        consumers: wanted,
        undecided,
    })
}

/// Whether a platform lookup failed for want of the platform (not for want of the thing).
fn platform_away(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(_) | StoreError::Other(_))
}

/// The stream's app, loaded; `Unusable` (logged) when it has no usable active version,
/// `Unknown` when the platform could not say.
async fn plan(context: &StreamContext, stream: StreamRecord, tenant: TenantRecord) -> Planned {
    let platform = &context.platform;
    let record = match platform.app(&tenant.id, &stream.app).await {
        Ok(record) => record,
        Err(e) if platform_away(&e) => return Planned::Unknown,
        Err(e) => {
            tracing::debug!(stream = %stream.id, error = %e, "stream app unavailable");
            return Planned::Unusable;
        }
    };
    let Some(active) = record.active.clone() else {
        return Planned::Unusable;
    };
    let version = match platform.version(&tenant.id, &stream.app, &active).await {
        Ok(version) => version,
        Err(e) if platform_away(&e) => return Planned::Unknown,
        Err(_) => return Planned::Unusable,
    };
    let app = match context.apps.load(&version).await {
        Ok(app) => app,
        Err(AdmitError::Store(e)) if platform_away(&e) => return Planned::Unknown,
        Err(AdmitError::Refused(failure)) if failure.class == FailureClass::HostError => {
            tracing::warn!(stream = %stream.id, error = %failure.message, "cannot load the stream's app here now; keeping its consumers");
            return Planned::Unknown;
        }
        Err(e) => {
            tracing::warn!(stream = %stream.id, error = %e, "cannot load the stream's app");
            return Planned::Unusable;
        }
    };
    let options = CallOptions {
        label: format!(
            "{}/{}@{} stream {}",
            tenant.id,
            stream.app,
            short(&active),
            stream.name
        ),
        params: Arc::new(stream.params.clone()),
        limits: context.apps.version_limits(&tenant, &record, &version),
    };
    let collection = stream
        .collection
        .clone()
        .unwrap_or_else(|| tenant.profile.sink.collection.clone());
    Planned::Ready(Arc::new(Plan {
        stream,
        tenant,
        app,
        version: active,
        options,
        collection,
    }))
}

async fn apply(
    context: &Arc<StreamContext>,
    wanted: Wanted,
    consumers: &mut HashMap<(String, u32), Running>,
    streams: &mut HashMap<String, Local>,
) {
    let Wanted {
        consumers: mut wanted,
        undecided,
    } = wanted;
    let cap = context.config.max_consumers_per_host;
    if wanted.len() > cap {
        tracing::warn!(
            wanted = wanted.len(),
            cap,
            "this host's share of stream consumers is above stream.max_consumers_per_host; running the first {cap}"
        );
        let keep: Vec<_> = wanted.keys().take(cap).cloned().collect();
        wanted.retain(|k, _| keep.contains(k));
    }
    let gone: Vec<_> = consumers
        .keys()
        .filter(|k| !wanted.contains_key(*k) && !undecided.contains(&k.0))
        .cloned()
        .collect();
    stop_consumers(consumers, gone).await;
    // Each local stream gets the newest plan; streams without consumers here lose theirs.
    let mut plans: HashMap<String, Arc<Plan>> = HashMap::new();
    for ((stream, _), plan) in &wanted {
        plans.entry(stream.clone()).or_insert_with(|| plan.clone());
    }
    let idle: Vec<_> = streams
        .keys()
        .filter(|s| !plans.contains_key(*s) && !undecided.contains(*s))
        .cloned()
        .collect();
    for stream in idle {
        if let Some(local) = streams.remove(&stream) {
            finish_reporter(local).await;
        }
    }
    for (stream, plan) in plans {
        match streams.get(&stream) {
            Some(local) => {
                local.plan.send_replace(plan);
            }
            None => {
                let local = start_reporter(context.clone(), plan);
                streams.insert(stream, local);
            }
        }
    }
    for (key, _) in wanted {
        if consumers.contains_key(&key) {
            continue;
        }
        let Some(local) = streams.get(&key.0) else {
            continue;
        };
        let (stop, stop_rx) = watch::channel(false);
        let consumer = Consumer {
            context: context.clone(),
            plan: local.plan.subscribe(),
            shared: local.shared.clone(),
            slot: key.1,
            stop: stop_rx,
        };
        local.shared.consumers.fetch_add(1, Ordering::Relaxed);
        let shared = local.shared.clone();
        let task = tokio::spawn(async move {
            consumer.run().await;
            shared.consumers.fetch_sub(1, Ordering::Relaxed);
        });
        consumers.insert(key, Running { stop, task });
    }
}

async fn stop_consumers(consumers: &mut HashMap<(String, u32), Running>, keys: Vec<(String, u32)>) {
    let mut tasks = Vec::new();
    for key in keys {
        if let Some(running) = consumers.remove(&key) {
            let _ = running.stop.send(true);
            tasks.push(running.task);
        }
    }
    if tasks.is_empty() {
        return;
    }
    let all = futures_util::future::join_all(tasks);
    if tokio::time::timeout(STOP_GRACE, all).await.is_err() {
        tracing::warn!(
            "stream consumers still busy after {STOP_GRACE:?}; their messages go back to the queue"
        );
    }
}

fn start_reporter(context: Arc<StreamContext>, plan: Arc<Plan>) -> Local {
    let (plan_tx, plan_rx) = watch::channel(plan);
    let shared = Arc::new(StreamShared::default());
    let (reporter_stop, mut stop) = watch::channel(false);
    let reporter = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                let every = Duration::from_secs(
                    plan_rx.borrow().tenant.profile.stream.report_interval_secs,
                );
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    _ = stop.changed() => true,
                };
                let plan = plan_rx.borrow().clone();
                report(&context, &plan, &shared, last.elapsed()).await;
                last = Instant::now();
                if stopping {
                    break;
                }
            }
        })
    };
    Local {
        plan: plan_tx,
        shared,
        reporter_stop,
        reporter,
    }
}

async fn finish_reporter(local: Local) {
    let _ = local.reporter_stop.send(true);
    let _ = local.reporter.await;
}

/// Writes this host's report of one stream and updates the gauges.
async fn report(context: &StreamContext, plan: &Plan, shared: &StreamShared, interval: Duration) {
    let mut counts = shared.take();
    let (latency_avg_ms, latency_p99_ms) = counts.latency_ms();
    let stream = &plan.stream;
    let queue_depth = match context.broker.ready(&stream.tenant, &stream.queue).await {
        Ok(depth) => depth,
        Err(e) => {
            tracing::warn!(stream = %stream.id, error = %format!("{e:#}"), "cannot read the queue's depth");
            0
        }
    };
    let consumers = shared.consumers.load(Ordering::Relaxed);
    let throttled = shared.throttled.load(Ordering::Relaxed);
    context.metrics.stream_gauges(
        &stream.tenant,
        &stream.name,
        consumers,
        queue_depth,
        throttled,
    );
    let report = StreamReport {
        tenant: stream.tenant.clone(),
        stream: stream.name.clone(),
        host: context.host.clone(),
        at: Some(DateTime::now()),
        interval_ms: interval.as_millis() as u64,
        consumers,
        messages: counts.messages,
        bytes: counts.bytes,
        documents: counts.documents,
        dead_lettered: counts.dead_lettered,
        retried: counts.retried,
        errors: counts.errors,
        latency_avg_ms,
        latency_p99_ms,
        queue_depth,
        throttled,
        folded: None,
    };
    context.outbox.report(report);
}
