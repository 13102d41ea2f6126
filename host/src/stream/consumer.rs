//! One consumer of one stream: takes deliveries in batches (`stream.batch_size`, or what came
//! within `stream.linger_ms`), checks the tenant's quota, hands the batch to the stream app in
//! a fresh sandbox, writes the documents with unordered bulk inserts and deterministic ids,
//! then settles each message by its outcome. Two stages overlap: the reader runs the app on
//! the next batch while the writer has up to `sink.writes_in_flight` earlier batches being
//! written, which it settles strictly in delivery order.
//!
//! | outcome                                   | settlement                                    |
//! |-------------------------------------------|-----------------------------------------------|
//! | documents (written)                       | ack (one multiple ack per batch, after the write) |
//! | `retry` (or a host error) before the limit | nack + requeue                                |
//! | `retry` on the last allowed delivery      | dead-lettered, class `retry`                  |
//! | `reject`, a limit violation, bad output   | dead-lettered with class and reason            |
//! | coredms or broker down                    | held unacknowledged, retried with backoff      |
//! | quota counter (Redis) unreachable         | admitted by this host's own counter (`quota`)  |
//!
//! Only the app's own verdicts spend a message's delivery attempts. A platform-side failure
//! (the coredms, the platform database, Redis) never closes the session nor requeues: the
//! batch stays unacknowledged in the consumer's hands and is retried in place, so the broker
//! counts no delivery. The session ends only when the broker side fails (or on stop); the
//! consumer then reconnects after a pause that grows while sessions keep failing at once and
//! starts again from the shortest after a healthy session ([`Reconnect`]).
//!
//! A batch whose call traps (one message's panic or limit kills the instance) is run again
//! one message per call, so only the guilty message is dead-lettered. Dead letters are
//! published with confirms to the vhost's dead-letter exchange before the original is
//! acknowledged, with `x-mysimbdp-*` headers saying tenant, stream, app version, class and
//! reason. A crash anywhere before the ack redelivers the batch; the ids make the rewrite a
//! no-op, so nothing is lost and nothing duplicated.

use super::StreamContext;
use super::broker::DEAD_LETTER_EXCHANGE;
use super::policy::Reconnect;
use super::quota::{Admission, Limits};
use super::stats::StreamShared;
use crate::documents::DerivedIds;
use crate::platform::{StreamEvent, StreamRecord, TenantRecord};
use crate::runtime::{App, CallOptions, Document, Failure, FailureClass, Message};
use crate::sink::{BulkWriter, WriteError, stored_document};
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, message::Delivery};
use mongodb::bson::DateTime;
use mongodb::bson::RawDocumentBuf;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The longest pause between attempts to reach the broker or the coredms.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The first such pause.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between attempts to write a held batch to an unreachable coredms:
/// short, so consumption resumes within seconds of its return (an attempt costs little).
const MAX_WRITE_BACKOFF: Duration = Duration::from_secs(5);
/// A session that stayed up this long was healthy: the next reconnect waits `FIRST_BACKOFF`.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// What a consumer runs: the stream, its tenant and the app version, refreshed by the
/// manager when any of them changes.
pub struct Plan {
    /// The stream.
    pub stream: StreamRecord,
    /// Its tenant (profile included).
    pub tenant: TenantRecord,
    /// The app's active version, loaded.
    pub app: Arc<App>,
    /// Its digest.
    pub version: String,
    /// Label, parameters and sandbox limits of calls.
    pub options: CallOptions,
    /// Where documents land.
    pub collection: String,
}

/// One consumer task.
pub struct Consumer {
    /// Shared parts.
    pub context: Arc<StreamContext>,
    /// The current plan.
    pub plan: watch::Receiver<Arc<Plan>>,
    /// The stream's counters on this host.
    pub shared: Arc<StreamShared>,
    /// Its slot in the stream (names it).
    pub slot: u32,
    /// Turns true when the consumer should finish its batch and go.
    pub stop: watch::Receiver<bool>,
}

/// A batch the app has run on, on its way to the writer.
struct Processed {
    plan: Arc<Plan>,
    batch: Vec<(Delivery, Instant)>,
    messages: Vec<Message>,
    actions: Vec<Action>,
    /// Each message's documents as stored (BSON with `_id`), converted by the reader.
    /// The documents as BSON, converted while the previous batch was written; `None` when
    /// they would pass the write buffer (the writer then converts them as it writes).
    stored: Option<Vec<Vec<RawDocumentBuf>>>,
    bytes: u64,
}

/// What becomes of one message.
enum Action {
    Write(Vec<Document>),
    Requeue(String),
    Dead { class: FailureClass, reason: String },
}

impl Consumer {
    /// Consumes until stopped, reconnecting with backoff after any broker error.
    pub async fn run(mut self) {
        let name = self.name();
        tracing::info!(consumer = %name, "stream consumer started");
        let mut backoff = Reconnect::new(FIRST_BACKOFF, MAX_BACKOFF, HEALTHY_SESSION);
        while !*self.stop.borrow() {
            let started = Instant::now();
            let settled = AtomicU64::new(0);
            match self.session(&settled).await {
                Ok(()) => break,
                Err(e) => {
                    let pause =
                        backoff.after_failure(started.elapsed(), settled.load(Ordering::Relaxed));
                    tracing::warn!(consumer = %name, error = %format!("{e:#}"), ?pause, "stream consumer failed; reconnecting");
                    self.shared.record(|c| c.errors += 1);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
        tracing::info!(consumer = %name, "stream consumer stopped");
    }

    fn name(&self) -> String {
        let plan = self.plan.borrow();
        format!(
            "{}/{}/{}#{}",
            self.context.host, plan.stream.tenant, plan.stream.name, self.slot
        )
    }

    /// One connection: consume batches until stopped (Ok) or the broker fails (Err); counts
    /// the messages it settles in `settled`.
    async fn session(&mut self, settled: &AtomicU64) -> Result<()> {
        let plan = self.plan.borrow().clone();
        let config = &self.context.config;
        let connection = self.context.broker.connect(&plan.stream.tenant).await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .context("setting the prefetch")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        let mut deliveries = channel
            .basic_consume(
                plan.stream.queue.as_str().into(),
                self.name().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming queue {:?}", plan.stream.queue))?;
        // Two stages: while the writer writes (and acknowledges) batches, the reader collects
        // the next and runs the app on it. Settlement stays in delivery order.
        let (ready, processed) = mpsc::channel::<Processed>(1);
        let outcome = tokio::try_join!(
            self.read(&mut deliveries, ready, self.stop.clone()),
            self.drain(&channel, processed, self.stop.clone(), settled),
        );
        // Closing returns what this consumer still holds to the queue.
        let _ = channel.close(200, "consumer stopping".into()).await;
        let _ = connection.close(200, "consumer stopping".into()).await;
        outcome.map(drop)
    }

    /// Collects batches and runs the app on them until stopped (or the writer is gone).
    async fn read(
        &self,
        deliveries: &mut lapin::Consumer,
        ready: mpsc::Sender<Processed>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let linger = Duration::from_millis(self.context.config.linger_ms);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let first = tokio::select! {
                delivery = deliveries.next() => delivery,
                _ = stop.changed() => return Ok(()),
            };
            let mut batch = vec![(received(first)?, Instant::now())];
            let cap = self.batch_cap();
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < cap {
                match tokio::time::timeout_at(deadline, deliveries.next()).await {
                    Ok(delivery) => batch.push((received(delivery)?, Instant::now())),
                    Err(_) => break,
                }
            }
            let Some(processed) = self.process(batch, &mut stop).await? else {
                return Ok(());
            };
            if ready.send(processed).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Writes processed batches, up to `sink.writes_in_flight` at once (MongoDB writes one
    /// while the next is sent), and settles them strictly in delivery order: a batch is
    /// acknowledged only after its own write and every earlier batch's settlement, so the
    /// multiple ack never covers a message whose documents are not stored. Returns when the
    /// reader is done (or a held write is stopped).
    async fn drain(
        &self,
        channel: &Channel,
        mut processed: mpsc::Receiver<Processed>,
        stop: watch::Receiver<bool>,
        settled: &AtomicU64,
    ) -> Result<()> {
        let most = self.writes_in_flight();
        let mut in_flight = FuturesOrdered::new();
        let mut reading = true;
        loop {
            tokio::select! {
                next = processed.recv(), if reading && in_flight.len() < most => {
                    let Some(batch) = next else {
                        reading = false;
                        continue;
                    };
                    let mut stop = stop.clone();
                    in_flight.push_back(async move {
                        let mut batch: Processed = batch;
                        let stored = std::mem::take(&mut batch.stored);
                        let documents = self
                            .write(
                                &batch.plan,
                                &batch.messages,
                                &mut batch.actions,
                                stored,
                                &mut stop,
                            )
                            .await;
                        (batch, documents, Instant::now())
                    });
                }
                Some((batch, documents, written)) = in_flight.next(), if !in_flight.is_empty() => {
                    // Stopped while the coredms was down: this batch and those after it go
                    // back to the queue unacknowledged when the channel closes.
                    let Some(documents) = documents else {
                        return Ok(());
                    };
                    self.settle(
                        channel,
                        &batch.plan,
                        &batch.batch,
                        &batch.messages,
                        &batch.actions,
                    )
                    .await?;
                    settled.fetch_add(batch.batch.len() as u64, Ordering::Relaxed);
                    self.account(&batch, documents, written);
                }
                else => return Ok(()),
            }
        }
    }

    /// Stream batches written at once by one consumer: the sink's setting.
    fn writes_in_flight(&self) -> usize {
        self.context.sinks.writes_in_flight().max(1)
    }

    /// The write buffer of one batch: the sink's, shared by the batches in flight and the
    /// one the reader holds, so a consumer holds at most `sink.write_buffer_mib` of BSON.
    fn batch_write_bytes(&self) -> usize {
        (self.context.sinks.write_buffer_bytes() / (self.writes_in_flight() + 1)).max(1)
    }

    /// The batch size: the configured one, never above the tenant's whole window quota.
    fn batch_cap(&self) -> usize {
        let plan = self.plan.borrow();
        let quota = plan.tenant.profile.stream.max_messages_per_window;
        self.context
            .config
            .batch_size
            .min(usize::try_from(quota).unwrap_or(usize::MAX))
            .max(1)
    }

    /// Runs the app on a batch once the tenant's quota admits it; `None` when stopped while
    /// waiting for the quota (the batch then goes back to the queue).
    async fn process(
        &self,
        batch: Vec<(Delivery, Instant)>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Processed>> {
        let plan = self.plan.borrow().clone();
        let bytes: u64 = batch.iter().map(|(d, _)| d.data.len() as u64).sum();
        let count = batch.len() as u64;
        let messages: Vec<Message> = batch.iter().map(|(d, _)| message_of(d)).collect();
        // The quota check and the app call overlap: the Redis round trip costs nothing then.
        // Over the quota, the outcomes simply wait with their (unacknowledged) messages.
        let (admission, mut actions) = tokio::join!(
            self.context
                .quota
                .admit(&plan.stream.tenant, count, bytes, limits(&plan)),
            self.run_app(&plan, &messages)
        );
        if !self.admit(&plan, count, bytes, admission, stop).await {
            return Ok(None);
        }
        for (action, message) in actions.iter_mut().zip(&messages) {
            if let Action::Requeue(reason) = action
                && message.attempt >= plan.stream.delivery_limit
            {
                *action = Action::Dead {
                    class: FailureClass::Retry,
                    reason: format!(
                        "gave up after {} deliveries (the stream's delivery limit): {reason}",
                        message.attempt
                    ),
                };
            }
        }
        let stored = convert(&plan, &messages, &mut actions, self.batch_write_bytes());
        Ok(Some(Processed {
            plan,
            batch,
            messages,
            actions,
            stored,
            bytes,
        }))
    }

    /// Counts a settled batch in the stream's report and the metrics.
    fn account(&self, processed: &Processed, documents: u64, written: Instant) {
        let Processed {
            plan,
            batch,
            actions,
            bytes,
            ..
        } = processed;
        let (mut ok, mut dead, mut retried) = (0u64, 0u64, 0u64);
        self.shared.record(|c| {
            c.messages += batch.len() as u64;
            c.bytes += bytes;
            c.documents += documents;
            for (action, (_, at)) in actions.iter().zip(batch) {
                match action {
                    Action::Write(_) => {
                        ok += 1;
                        c.latency(written.duration_since(*at).as_micros() as u64);
                    }
                    Action::Dead { .. } => dead += 1,
                    Action::Requeue(_) => retried += 1,
                }
            }
            c.dead_lettered += dead;
            c.retried += retried;
        });
        let (tenant, stream) = (&plan.stream.tenant, &plan.stream.name);
        let metrics = &self.context.metrics;
        metrics.stream_batch(tenant, stream, ok, dead, retried, *bytes, documents);
        metrics.stream_latencies(
            tenant,
            stream,
            actions
                .iter()
                .zip(batch)
                .filter(|(action, _)| matches!(action, Action::Write(_)))
                .map(|(_, (_, at))| written.duration_since(*at)),
        );
    }

    /// Waits while the tenant is over its quota (from the `first` answer on); the batch stays
    /// unacknowledged meanwhile. False when stopped while waiting.
    async fn admit(
        &self,
        plan: &Plan,
        messages: u64,
        bytes: u64,
        first: Admission,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut admission = first;
        loop {
            match admission {
                Admission::Granted | Admission::GrantedLocally => {
                    if admission == Admission::GrantedLocally {
                        self.context
                            .metrics
                            .stream_quota_degraded(&plan.stream.tenant);
                    }
                    if self.shared.set_throttled(false) {
                        self.event(plan, "resumed", "back within the quota".to_owned());
                    }
                    return true;
                }
                Admission::Wait { wait, reason } => {
                    if self.shared.set_throttled(true) {
                        tracing::info!(tenant = %plan.stream.tenant, stream = %plan.stream.name, %reason, "stream throttled");
                        self.event(plan, "throttled", reason);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
                        _ = stop.changed() => return false,
                    }
                    admission = self
                        .context
                        .quota
                        .admit(&plan.stream.tenant, messages, bytes, limits(plan))
                        .await;
                }
            }
        }
    }

    /// Records a throttling change (through the outbox: kept while the database is away).
    fn event(&self, plan: &Plan, kind: &str, reason: String) {
        let event = StreamEvent {
            tenant: plan.stream.tenant.clone(),
            stream: plan.stream.name.clone(),
            at: DateTime::now(),
            kind: kind.to_owned(),
            from: None,
            to: None,
            reason,
            host: self.context.host.clone(),
        };
        self.context.outbox.event(event);
    }

    /// One outcome per message; a batch that traps is run again one message at a time.
    async fn run_app(&self, plan: &Plan, messages: &[Message]) -> Vec<Action> {
        let runtime = self.context.apps.runtime();
        match runtime.run_stream(&plan.app, messages, &plan.options).await {
            Ok(report) => report.outcomes.into_iter().map(action_of).collect(),
            Err(failure) if messages.len() == 1 => vec![action_of(Err(failure))],
            Err(failure) => {
                tracing::info!(
                    stream = %plan.stream.id, class = %failure.class, error = %failure.message,
                    "a batch failed as a whole; running its {} messages one by one",
                    messages.len()
                );
                let mut actions = Vec::with_capacity(messages.len());
                for message in messages {
                    let one = runtime
                        .run_stream(&plan.app, std::slice::from_ref(message), &plan.options)
                        .await
                        .and_then(|mut report| {
                            report.outcomes.pop().ok_or_else(|| {
                                Failure::new(FailureClass::BadOutput, "no outcome for the message")
                            })?
                        });
                    actions.push(action_of(one));
                }
                actions
            }
        }
    }

    /// Writes the documents of every `Write` action; a message whose document the coredms
    /// refuses becomes a dead letter and the rest is written again (the ids make that
    /// harmless). Returns the documents written, or `None` when stopped while the coredms
    /// was down (the batch then goes back to the queue).
    async fn write(
        &self,
        plan: &Plan,
        messages: &[Message],
        actions: &mut [Action],
        stored: Option<Vec<Vec<RawDocumentBuf>>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<u64> {
        // The first attempt writes what the reader converted (if it fit the write buffer);
        // otherwise, and on a retry, documents are converted as they are written.
        let mut stored = stored;
        let tenant = &plan.tenant;
        let sink_settings = &tenant.profile.sink;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let failed = match self.context.sinks.resolve(tenant).await {
                Err(e) => e.to_string(),
                Ok(sink) => {
                    let mut writer = BulkWriter::new(
                        sink,
                        plan.collection.clone(),
                        sink_settings.write_concern,
                        sink_settings.insert_batch,
                        self.batch_write_bytes(),
                    )
                    .keeping_every_refusal();
                    let written = match stored.take() {
                        Some(documents) => write_once(actions, documents, &mut writer).await,
                        None => write_converting(plan, messages, actions, &mut writer).await,
                    };
                    match written {
                        Ok(owners) => {
                            // A message with a document the coredms refused is a dead letter;
                            // the rest of the batch landed.
                            for refusal in &writer.refusals {
                                if let Some(&owner) = owners.get(refusal.index as usize) {
                                    actions[owner] = Action::Dead {
                                        class: FailureClass::BadOutput,
                                        reason: refusal.reason.clone(),
                                    };
                                }
                            }
                            return Some(writer.inserted + writer.duplicates);
                        }
                        Err(WriteError::Infra(e)) => {
                            self.context.sinks.forget(&tenant.id);
                            e.to_string()
                        }
                    }
                }
            };
            tracing::warn!(stream = %plan.stream.id, error = %failed, ?backoff, "cannot write to the tenant's coredms; holding the batch and retrying");
            self.shared.record(|c| c.errors += 1);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return None,
            }
            backoff = (backoff * 2).min(MAX_WRITE_BACKOFF);
        }
    }

    /// Dead letters first (confirmed), then requeues, then one multiple ack.
    async fn settle(
        &self,
        channel: &Channel,
        plan: &Plan,
        batch: &[(Delivery, Instant)],
        messages: &[Message],
        actions: &[Action],
    ) -> Result<()> {
        let mut confirms = Vec::new();
        for ((action, (delivery, _)), message) in actions.iter().zip(batch).zip(messages) {
            let Action::Dead { class, reason } = action else {
                continue;
            };
            tracing::info!(stream = %plan.stream.id, message = %message.id, %class, %reason, "dead-lettering a message");
            let properties = dead_letter_properties(
                plan,
                delivery,
                message,
                *class,
                reason,
                self.context.broker.platform_user(),
            );
            let confirm = channel
                .basic_publish(
                    DEAD_LETTER_EXCHANGE.into(),
                    plan.stream.queue.as_str().into(),
                    // Returned if the dead-letter queue is gone: then the original stays
                    // unacknowledged rather than vanish.
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &delivery.data,
                    properties,
                )
                .await
                .context("publishing a dead letter")?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = confirm.await.context("confirming a dead letter")?;
            if !confirmation.is_ack() || confirmation.take_message().is_some() {
                bail!(
                    "the broker refused a dead letter (is {:?} gone?)",
                    plan.stream.dead_letter_queue
                );
            }
        }
        let mut last_ack = None;
        for (action, (delivery, _)) in actions.iter().zip(batch) {
            match action {
                Action::Requeue(_) => channel
                    .basic_nack(
                        delivery.delivery_tag,
                        BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        },
                    )
                    .await
                    .context("requeueing a message")?,
                _ => last_ack = Some(delivery.delivery_tag),
            }
        }
        if let Some(tag) = last_ack {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .context("acknowledging the batch")?;
        }
        Ok(())
    }
}

/// Each message's documents as stored: BSON with its `_id` (the app's, or derived from
/// tenant, stream, message id and position). A message with a document that cannot be stored
/// as emitted becomes a dead letter (`bad-output`). `None` when the batch's BSON would pass
/// `budget` bytes: what a stream batch holds stays bounded whatever the documents' shape,
/// and the writer converts them as it writes instead.
fn convert(
    plan: &Plan,
    messages: &[Message],
    actions: &mut [Action],
    budget: usize,
) -> Option<Vec<Vec<RawDocumentBuf>>> {
    let mut all = Vec::with_capacity(messages.len());
    let mut bytes = 0usize;
    for (action, message) in actions.iter_mut().zip(messages) {
        let Action::Write(documents) = action else {
            all.push(Vec::new());
            continue;
        };
        let mut stored = Vec::with_capacity(documents.len());
        let mut refused = None;
        let ids = message_ids(plan, message);
        for (n, document) in documents.iter().enumerate() {
            match stored_one(&ids, n, document) {
                Ok(document) => {
                    bytes += document.as_bytes().len();
                    if bytes > budget {
                        return None;
                    }
                    stored.push(document);
                }
                Err(reason) => {
                    refused = Some(reason);
                    break;
                }
            }
        }
        match refused {
            None => all.push(stored),
            Some(reason) => {
                *action = dead_for_output(reason);
                all.push(Vec::new());
            }
        }
    }
    Some(all)
}

/// The derived ids of `message`'s documents, by the stream's scheme: the message id is the
/// source, so a redelivery derives the same ids.
fn message_ids(plan: &Plan, message: &Message) -> DerivedIds {
    let stream = &plan.stream;
    stream
        .ids
        .message_ids(&stream.tenant, &stream.name, &message.id)
}

/// Document `n` of a message as stored, or why it cannot be.
fn stored_one(
    ids: &DerivedIds,
    n: usize,
    document: &crate::runtime::Document,
) -> Result<RawDocumentBuf, String> {
    stored_document(ids, n as u64, &document.json, document.id.as_deref())
        .map_err(|reason| format!("document {n} cannot be stored as emitted: {reason}"))
}

fn dead_for_output(reason: String) -> Action {
    Action::Dead {
        class: FailureClass::BadOutput,
        reason,
    }
}

/// One attempt at writing the `Write` actions' documents, converting each as it goes (the
/// writer's buffer bounds what is held); a message with a document that cannot be stored
/// becomes a dead letter. Returns which message owns each document pushed.
async fn write_converting(
    plan: &Plan,
    messages: &[Message],
    actions: &mut [Action],
    writer: &mut BulkWriter,
) -> Result<Vec<usize>, WriteError> {
    let mut owners = Vec::new();
    let mut refused = Vec::new();
    for (i, (action, message)) in actions.iter().zip(messages).enumerate() {
        let Action::Write(documents) = action else {
            continue;
        };
        let ids = message_ids(plan, message);
        for (n, document) in documents.iter().enumerate() {
            match stored_one(&ids, n, document) {
                Ok(document) => {
                    let index = owners.len() as u64;
                    owners.push(i);
                    writer.push(index, document).await?;
                }
                Err(reason) => {
                    refused.push((i, reason));
                    break;
                }
            }
        }
    }
    writer.flush().await?;
    for (i, reason) in refused {
        actions[i] = dead_for_output(reason);
    }
    Ok(owners)
}

/// One attempt at writing the `Write` actions' documents; returns which message owns each
/// document pushed, so refusals can be traced back to their messages.
async fn write_once(
    actions: &[Action],
    stored: Vec<Vec<RawDocumentBuf>>,
    writer: &mut BulkWriter,
) -> Result<Vec<usize>, WriteError> {
    let mut owners = Vec::new();
    for (i, (action, documents)) in actions.iter().zip(stored).enumerate() {
        if !matches!(action, Action::Write(_)) {
            continue;
        }
        for document in documents {
            let index = owners.len() as u64;
            owners.push(i);
            writer.push(index, document).await?;
        }
    }
    writer.flush().await?;
    Ok(owners)
}

/// The tenant's stream quota, from its profile.
fn limits(plan: &Plan) -> Limits {
    Limits::of(&plan.tenant.profile.stream)
}

fn received(delivery: Option<lapin::Result<Delivery>>) -> Result<Delivery> {
    match delivery {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(e)) => Err(e).context("receiving from the broker"),
        None => bail!("the broker cancelled the consumer (queue deleted?)"),
    }
}

fn action_of(outcome: Result<Vec<Document>, Failure>) -> Action {
    match outcome {
        Ok(documents) => Action::Write(documents),
        Err(failure) if failure.class.is_retryable() => {
            Action::Requeue(format!("{}: {}", failure.class, failure.message))
        }
        Err(failure) => Action::Dead {
            class: failure.class,
            reason: failure.message,
        },
    }
}

/// The message as the app sees it. Its id is the publisher's `message_id`, or else the
/// SHA-256 of its body: stable across redeliveries either way, so document ids are too.
pub fn message_of(delivery: &Delivery) -> Message {
    let properties = &delivery.properties;
    let id = match properties.message_id() {
        Some(id) if !id.as_str().is_empty() => id.to_string(),
        _ => format!(
            "sha256:{}",
            hex::encode(&Sha256::digest(&delivery.data)[..16])
        ),
    };
    let mut headers = Vec::new();
    let mut previous_deliveries = 0u32;
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            if name.as_str() == "x-delivery-count" {
                previous_deliveries = integer(value).unwrap_or(0).try_into().unwrap_or(0);
                continue;
            }
            match value {
                AMQPValue::LongString(s) => headers.push((
                    name.to_string(),
                    String::from_utf8_lossy(s.as_bytes()).into(),
                )),
                AMQPValue::ShortString(s) => headers.push((name.to_string(), s.to_string())),
                other => {
                    if let Some(n) = integer(other) {
                        headers.push((name.to_string(), n.to_string()));
                    }
                }
            }
        }
    }
    Message {
        id,
        payload: delivery.data.clone(),
        content_type: properties.content_type().as_ref().map(|c| c.to_string()),
        headers,
        attempt: previous_deliveries.saturating_add(1),
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

/// The original properties, with headers saying who dead-lettered the message and why, marked
/// as the platform's by its `user_id` (the broker refuses that mark from anyone else; see
/// `broker`). The publisher's own `x-mysimbdp-*` headers are dropped: under that mark every
/// one of them is the platform's.
fn dead_letter_properties(
    plan: &Plan,
    delivery: &Delivery,
    message: &Message,
    class: FailureClass,
    reason: &str,
    platform_user: &str,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in delivery
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().iter())
        .into_iter()
        .flatten()
    {
        if !name.as_str().starts_with("x-mysimbdp-") {
            headers.insert(name.clone(), value.clone());
        }
    }
    let text = |s: &str| AMQPValue::LongString(s.into());
    for (name, value) in [
        ("x-mysimbdp-tenant", text(&plan.stream.tenant)),
        ("x-mysimbdp-stream", text(&plan.stream.name)),
        ("x-mysimbdp-app", text(&plan.stream.app)),
        ("x-mysimbdp-app-version", text(&plan.version)),
        ("x-mysimbdp-error-class", text(class.as_str())),
        ("x-mysimbdp-error", text(reason)),
        ("x-mysimbdp-message-id", text(&message.id)),
        (
            "x-mysimbdp-deliveries",
            AMQPValue::LongLongInt(message.attempt.into()),
        ),
        (
            "x-mysimbdp-dead-lettered-at",
            text(&DateTime::now().try_to_rfc3339_string().unwrap_or_default()),
        ),
    ] {
        headers.insert(name.into(), value);
    }
    delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_user_id(platform_user.into())
}
