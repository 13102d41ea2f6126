//! The platform database in MongoDB: tenants, their versioned profiles, apps, app versions
//! and the components themselves (GridFS), batch jobs' durable records and the ingestion log.
//! Separate from every tenant's own database; any host reads and writes it, so every `serve`
//! process sees the same platform.

mod apps;
mod jobs;
mod log_writer;
mod series;
mod streams;
mod tenants;
mod usage;

pub use apps::{AppRecord, NewVersion, VersionRecord};
pub use jobs::{BatchJob, JobSpec};
pub use log_writer::LogWriter;
pub use series::{BatchStep, ReportStep, SeriesSteps};
pub use streams::{
    BrokerAccount, Folded, NewStream, StreamEvent, StreamRecord, StreamReport, StreamStatus,
};
pub use tenants::{ProfileVersion, TenantRecord, TenantStatus};
pub use usage::{BatchStats, JobRecord, LogEntry, QuotaExceeded, today};

use crate::config::{PlatformConfig, redact_uri};
use anyhow::Context;
use mongodb::bson::doc;
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, WriteFailure};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{ClientOptions, GridFsBucketOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use std::time::Duration;

/// How long a host waits for MongoDB before an operation fails.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong in the platform store; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing does not exist (or belongs to another tenant, which looks the same).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// MongoDB failed or is unreachable.
    #[error("platform database: {0}")]
    Database(#[from] mongodb::error::Error),
    /// Anything else, with context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Results of the platform store.
pub type StoreResult<T> = Result<T, StoreError>;

/// Handle on the platform database. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    client: Client,
    database: Database,
    tenants: Collection<TenantRecord>,
    profiles: Collection<ProfileVersion>,
    apps: Collection<AppRecord>,
    versions: Collection<VersionRecord>,
    components: GridFsBucket,
    log: Collection<LogEntry>,
    jobs: Collection<BatchJob>,
    usage: Collection<mongodb::bson::Document>,
}

impl Platform {
    /// Connects, checks MongoDB answers, and creates the indexes the store relies on.
    pub async fn connect(config: &PlatformConfig) -> anyhow::Result<Self> {
        let shown = redact_uri(&config.mongodb_uri);
        let platform = Self::lazy(config).await?;
        platform
            .database
            .run_command(doc! { "ping": 1 })
            .await
            .with_context(|| format!("reaching the platform MongoDB at {shown}"))?;
        platform
            .ensure_indexes()
            .await
            .context("creating the platform database's indexes")?;
        Ok(platform)
    }

    /// The store over a client that reaches MongoDB on first use (the driver connects
    /// lazily): nothing is checked or created. For tests that never touch the database;
    /// `connect` is what a running platform uses.
    pub async fn lazy(config: &PlatformConfig) -> anyhow::Result<Self> {
        let shown = redact_uri(&config.mongodb_uri);
        let mut options = ClientOptions::parse(&config.mongodb_uri)
            .await
            .with_context(|| format!("parsing platform.mongodb_uri {shown:?}"))?;
        options.app_name = Some("mysimbdp".to_owned());
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        let client = Client::with_options(options)
            .with_context(|| format!("configuring the MongoDB client for {shown}"))?;
        let database = client.database(&config.database);
        Ok(Self {
            tenants: database.collection("tenants"),
            profiles: database.collection("profile_versions"),
            apps: database.collection("apps"),
            versions: database.collection("app_versions"),
            log: database.collection("ingestion_log"),
            jobs: database.collection("batch_jobs"),
            usage: database.collection("usage_daily"),
            components: database.gridfs_bucket(
                GridFsBucketOptions::builder()
                    .bucket_name("components".to_owned())
                    .build(),
            ),
            client,
            database,
        })
    }

    /// The platform database, for the stores that keep their own collections in it.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Whether MongoDB answers now.
    pub async fn ping(&self) -> StoreResult<()> {
        self.database.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let unique = |keys| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let plain = |keys| IndexModel::builder().keys(keys).build();
        self.tenants
            .create_index(unique(doc! { "token_hash": 1 }))
            .await?;
        self.profiles
            .create_index(unique(doc! { "tenant": 1, "version": 1 }))
            .await?;
        self.apps
            .create_index(unique(doc! { "tenant": 1, "name": 1 }))
            .await?;
        self.versions
            .create_index(plain(doc! { "tenant": 1, "app": 1, "uploaded_at": -1 }))
            .await?;
        self.log
            .create_index(plain(doc! { "tenant": 1, "started_at": -1 }))
            .await?;
        self.log
            .create_index(plain(doc! { "tenant": 1, "job.id": 1 }))
            .await?;
        self.jobs
            .create_index(plain(doc! { "tenant": 1, "created": -1 }))
            .await?;
        self.jobs
            .create_index(plain(doc! { "status": 1, "_id": 1 }))
            .await?;
        Ok(())
    }
}

/// Whether MongoDB refused a write because of a unique index.
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        _ => false,
    }
}

/// A transaction lost to a concurrent one: the caller may simply retry.
fn conflict_or(error: mongodb::error::Error, what: &str) -> StoreError {
    if error.contains_label(TRANSIENT_TRANSACTION_ERROR) {
        StoreError::Conflict(format!("{what} changed concurrently; retry the request"))
    } else {
        StoreError::Database(error)
    }
}
