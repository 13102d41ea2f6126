//! Streams in the platform database: each stream's record (app, parameters, status, desired
//! consumer count), each tenant's broker account, the consumers' periodic reports and the
//! monitor's decisions. Reports and events expire after `stream.report_retention_days`.

use super::{Platform, StoreError, StoreResult, is_duplicate_key};
use crate::documents::IdScheme;
use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

// The status is part of the API (stream views): it lives in the API types crate.
pub use mysimbdp_api::StreamStatus;

/// A stream as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamRecord {
    /// `<tenant>/<name>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The stream's name within the tenant (its id in the API).
    pub name: String,
    /// The stream app whose active version consumes it.
    pub app: String,
    /// The app's parameters.
    pub params: BTreeMap<String, String>,
    /// Where documents land; the profile's `sink.collection` when unset.
    pub collection: Option<String>,
    /// Deliveries of a message before it is dead-lettered.
    pub delivery_limit: u32,
    /// Running or stopped.
    pub status: StreamStatus,
    /// Consumers the stream should have now (the monitor moves it within the profile's
    /// min/max).
    pub consumers: u32,
    /// The tenant's vhost.
    pub vhost: String,
    /// The queue tenants publish to.
    pub queue: String,
    /// Where dead letters go.
    pub dead_letter_queue: String,
    /// When the monitor last changed `consumers`.
    pub scaled_at: Option<DateTime>,
    /// When the stream was created.
    pub created_at: DateTime,
    /// When it last changed.
    pub updated_at: DateTime,
    /// How its documents' ids derive from message ids: fixed when the stream is created, so a
    /// redelivery derives the same ids (streams from before ids were versioned are hashed).
    #[serde(default)]
    pub ids: IdScheme,
}

/// A tenant's account on the broker: one vhost and one user per tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerAccount {
    /// The tenant.
    #[serde(rename = "_id")]
    pub tenant: String,
    /// Its vhost.
    pub vhost: String,
    /// Its user.
    pub user: String,
    /// Its password (the platform database is the operator's; tenants fetch it with their
    /// token).
    pub password: String,
    /// When it was created or its password rotated.
    pub issued_at: DateTime,
}

/// One report of one host's consumers of one stream, over one interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamReport {
    /// The tenant.
    pub tenant: String,
    /// The stream's name.
    pub stream: String,
    /// The reporting host.
    pub host: String,
    /// The end of the interval.
    pub at: Option<DateTime>,
    /// The interval's length in ms.
    pub interval_ms: u64,
    /// Consumers of this stream on the host at the end of the interval.
    pub consumers: u32,
    /// Messages settled (acknowledged, dead-lettered or requeued).
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Documents written.
    pub documents: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Messages requeued for another attempt.
    pub retried: u64,
    /// Infrastructure errors (broker, coredms) met.
    pub errors: u64,
    /// Mean ingestion latency (delivery to completed write), ms.
    pub latency_avg_ms: f64,
    /// p99 of the same, ms.
    pub latency_p99_ms: f64,
    /// Messages waiting in the queue at the end of the interval.
    pub queue_depth: u64,
    /// Whether consumption was paused over the tenant's quota.
    pub throttled: bool,
    /// Earlier reports of this host that could not be kept while the platform database was
    /// away (its buffer was full): their counts are included in this report's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded: Option<Folded>,
}

/// What a report carries for reports folded into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Folded {
    /// The start of the first folded report's interval.
    pub from: DateTime,
    /// The end of the last one's.
    pub to: DateTime,
    /// Reports folded.
    pub reports: u64,
    /// Messages they counted.
    pub messages: u64,
    /// Stream events of the stretch dropped for want of room.
    pub events_dropped: u64,
}

impl StreamReport {
    /// Adds `other`'s counts to this report's (latency and gauges stay this report's).
    pub fn absorb(&mut self, other: &StreamReport) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.documents += other.documents;
        self.dead_lettered += other.dead_lettered;
        self.retried += other.retried;
        self.errors += other.errors;
    }

    /// The newest of `reports` (oldest first) from each host: how things stand now.
    pub fn latest_per_host(reports: &[StreamReport]) -> Vec<&StreamReport> {
        let mut latest = std::collections::HashMap::new();
        for report in reports {
            latest.insert(report.host.as_str(), report);
        }
        latest.into_values().collect()
    }
}

/// A monitor decision or a throttling change, with its reason.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamEvent {
    /// The tenant.
    pub tenant: String,
    /// The stream's name.
    pub stream: String,
    /// When.
    #[schema(value_type = String)]
    pub at: DateTime,
    /// `scale_up`, `scale_down`, `throttled`, `resumed`.
    pub kind: String,
    /// Consumers before (scaling).
    pub from: Option<u32>,
    /// Consumers after (scaling).
    pub to: Option<u32>,
    /// Why, with the figures that decided it.
    pub reason: String,
    /// The host that decided.
    pub host: String,
}

/// An event as the API shows it.
impl From<StreamEvent> for mysimbdp_api::EventView {
    fn from(event: StreamEvent) -> Self {
        Self {
            at: event.at.try_to_rfc3339_string().unwrap_or_default(),
            kind: event.kind,
            from: event.from,
            to: event.to,
            reason: event.reason,
            host: event.host,
        }
    }
}

/// A new stream.
pub struct NewStream<'a> {
    /// Owner.
    pub tenant: &'a str,
    /// Name.
    pub name: &'a str,
    /// App.
    pub app: &'a str,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Collection.
    pub collection: Option<String>,
    /// Delivery limit.
    pub delivery_limit: u32,
    /// Initial desired consumers.
    pub consumers: u32,
    /// Broker names.
    pub vhost: String,
    /// Queue.
    pub queue: String,
    /// Dead-letter queue.
    pub dead_letter_queue: String,
}

/// `value` as a document with `_id` set to `id`.
fn with_id(id: ObjectId, value: &impl Serialize) -> StoreResult<Document> {
    let mut document = mongodb::bson::to_document(value).map_err(anyhow::Error::from)?;
    document.insert("_id", id);
    Ok(document)
}

/// An insert that met its own earlier copy landed: success.
fn ignore_duplicate(error: mongodb::error::Error) -> StoreResult<()> {
    if is_duplicate_key(&error) {
        Ok(())
    } else {
        Err(error.into())
    }
}

fn stream_id(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("no stream named {name:?}"))
}

impl Platform {
    pub(super) fn streams(&self) -> Collection<StreamRecord> {
        self.database.collection("streams")
    }

    fn brokers(&self) -> Collection<BrokerAccount> {
        self.database.collection("broker_accounts")
    }

    fn reports(&self) -> Collection<StreamReport> {
        self.database.collection("stream_reports")
    }

    fn events(&self) -> Collection<StreamEvent> {
        self.database.collection("stream_events")
    }

    /// Creates the stream collections' indexes; reports and events expire after `retention`.
    pub async fn ensure_stream_indexes(&self, retention: Duration) -> StoreResult<()> {
        let expiring = |keys| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().expire_after(retention).build())
                .build()
        };
        let plain = |keys| IndexModel::builder().keys(keys).build();
        self.streams()
            .create_index(plain(doc! { "status": 1 }))
            .await?;
        self.reports()
            .create_index(expiring(doc! { "at": 1 }))
            .await?;
        self.reports()
            .create_index(plain(doc! { "tenant": 1, "stream": 1, "at": -1 }))
            .await?;
        self.events()
            .create_index(expiring(doc! { "at": 1 }))
            .await?;
        self.events()
            .create_index(plain(doc! { "tenant": 1, "stream": 1, "at": -1 }))
            .await?;
        Ok(())
    }

    /// Stores a new stream; 409 when the tenant already has one of that name.
    pub async fn create_stream(&self, new: NewStream<'_>) -> StoreResult<StreamRecord> {
        let now = DateTime::now();
        let record = StreamRecord {
            id: stream_id(new.tenant, new.name),
            tenant: new.tenant.to_owned(),
            name: new.name.to_owned(),
            app: new.app.to_owned(),
            params: new.params,
            collection: new.collection,
            delivery_limit: new.delivery_limit,
            status: StreamStatus::Running,
            consumers: new.consumers,
            vhost: new.vhost,
            queue: new.queue,
            dead_letter_queue: new.dead_letter_queue,
            scaled_at: None,
            created_at: now,
            updated_at: now,
            ids: IdScheme::CURRENT,
        };
        match self.streams().insert_one(&record).await {
            Ok(_) => Ok(record),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict(format!(
                "a stream named {:?} exists already",
                new.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// One stream of a tenant.
    pub async fn stream(&self, tenant: &str, name: &str) -> StoreResult<StreamRecord> {
        self.streams()
            .find_one(doc! { "_id": stream_id(tenant, name) })
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// A tenant's streams, by name.
    pub async fn list_streams(&self, tenant: &str) -> StoreResult<Vec<StreamRecord>> {
        Ok(self
            .streams()
            .find(doc! { "tenant": tenant })
            .sort(doc! { "name": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Every stream of every tenant, by tenant.
    pub async fn all_streams(&self) -> StoreResult<Vec<StreamRecord>> {
        Ok(self
            .streams()
            .find(doc! {})
            .sort(doc! { "tenant": 1, "name": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Every running stream of every tenant.
    pub async fn running_streams(&self) -> StoreResult<Vec<StreamRecord>> {
        Ok(self
            .streams()
            .find(doc! { "status": "running" })
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Starts or stops a stream.
    pub async fn set_stream_status(
        &self,
        tenant: &str,
        name: &str,
        status: StreamStatus,
    ) -> StoreResult<StreamRecord> {
        let status = mongodb::bson::to_bson(&status).map_err(anyhow::Error::from)?;
        self.streams()
            .find_one_and_update(
                doc! { "_id": stream_id(tenant, name) },
                doc! { "$set": { "status": status, "updated_at": DateTime::now() } },
            )
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| not_found(name))
    }

    /// Moves a stream's desired consumers from `from` to `to`; false when another decision
    /// changed it first (the caller looks again).
    pub async fn scale_stream(&self, id: &str, from: u32, to: u32) -> StoreResult<bool> {
        let now = DateTime::now();
        let updated = self
            .streams()
            .update_one(
                doc! { "_id": id, "consumers": from },
                doc! { "$set": { "consumers": to, "scaled_at": now, "updated_at": now } },
            )
            .await?;
        Ok(updated.modified_count == 1)
    }

    /// Removes a stream's record.
    pub async fn delete_stream(&self, tenant: &str, name: &str) -> StoreResult<()> {
        let deleted = self
            .streams()
            .delete_one(doc! { "_id": stream_id(tenant, name) })
            .await?;
        if deleted.deleted_count == 0 {
            return Err(not_found(name));
        }
        Ok(())
    }

    /// Forgets every stream and the broker account of a deleted tenant.
    pub async fn delete_tenant_streams(&self, tenant: &str) -> StoreResult<()> {
        self.streams()
            .delete_many(doc! { "tenant": tenant })
            .await?;
        self.brokers().delete_one(doc! { "_id": tenant }).await?;
        Ok(())
    }

    /// The tenant's broker account, if one was created.
    pub async fn broker_account(&self, tenant: &str) -> StoreResult<Option<BrokerAccount>> {
        Ok(self.brokers().find_one(doc! { "_id": tenant }).await?)
    }

    /// Stores the tenant's broker account (replacing a rotated one).
    pub async fn save_broker_account(&self, account: &BrokerAccount) -> StoreResult<()> {
        self.brokers()
            .replace_one(doc! { "_id": &account.tenant }, account)
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Forgets the tenant's broker account.
    pub async fn delete_broker_account(&self, tenant: &str) -> StoreResult<()> {
        self.brokers().delete_one(doc! { "_id": tenant }).await?;
        Ok(())
    }

    /// Stores one consumer report under `id`; storing it again is a no-op (a retry after a
    /// lost answer must not count it twice).
    pub async fn insert_report(&self, id: ObjectId, report: &StreamReport) -> StoreResult<()> {
        let document = with_id(id, report)?;
        self.database
            .collection::<Document>("stream_reports")
            .insert_one(document)
            .await
            .map(drop)
            .or_else(ignore_duplicate)
    }

    /// A stream's reports of the last `window`, oldest first.
    pub async fn recent_reports(
        &self,
        tenant: &str,
        stream: &str,
        window: Duration,
    ) -> StoreResult<Vec<StreamReport>> {
        let since =
            DateTime::from_millis(DateTime::now().timestamp_millis() - window.as_millis() as i64);
        Ok(self
            .reports()
            .find(doc! { "tenant": tenant, "stream": stream, "at": { "$gte": since } })
            .sort(doc! { "at": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Records a decision or a throttling change under `id`; again, a no-op.
    pub async fn insert_event(&self, id: ObjectId, event: &StreamEvent) -> StoreResult<()> {
        let document = with_id(id, event)?;
        self.database
            .collection::<Document>("stream_events")
            .insert_one(document)
            .await
            .map(drop)
            .or_else(ignore_duplicate)
    }

    /// A stream's events since `since`, oldest first, at most `limit` (the newest of them).
    pub async fn stream_events_since(
        &self,
        tenant: &str,
        stream: &str,
        since: DateTime,
        limit: i64,
    ) -> StoreResult<Vec<StreamEvent>> {
        let mut events: Vec<StreamEvent> = self
            .events()
            .find(doc! { "tenant": tenant, "stream": stream, "at": { "$gte": since } })
            .sort(doc! { "at": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        events.reverse();
        Ok(events)
    }

    /// A stream's latest events, newest first.
    pub async fn stream_events(
        &self,
        tenant: &str,
        stream: &str,
        limit: i64,
    ) -> StoreResult<Vec<StreamEvent>> {
        Ok(self
            .events()
            .find(doc! { "tenant": tenant, "stream": stream })
            .sort(doc! { "at": -1 })
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }
}
