//! The staging area: files tenants upload, kept per tenant until a worker has ingested them
//! (then deleted or archived, per profile) or quarantined with the reason.
//!
//! A staged file is in one of four areas:
//!
//! ```text
//! incoming     being written while its upload streams in (never read; swept if its request died)
//! staged       complete, waiting for or in ingestion
//! archive      ingested, kept (profile: after_success = "archive")
//! quarantine   failed for good, with the reason beside it (a replay releases it to staged)
//! ```
//!
//! Two backends keep them, chosen by `batch.staging` in the operator's config:
//!
//! - [`local`]: a directory on this machine. Enough for one host; several hosts must share
//!   the directory (a mount), or a job uploaded through one host fails on another's worker.
//! - [`gridfs`]: MongoDB GridFS in the platform database, which every host already reaches:
//!   any host's worker takes any job, and an upload survives the host that received it.
//!
//! Both stream in and out in bounded memory, hash what they take in (GridFS also checks it
//! when reading) and apply the same rules; an object store (S3, GCS, …) would be a third
//! variant with the same operations (docs/deployment.md says how).

pub mod gridfs;
pub mod local;

use anyhow::{Context, Result, bail};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub use gridfs::GridFsStaging;
pub use local::LocalStaging;

/// A file in the staging area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// Its id: unique, stable across retries (document ids derive from it).
    pub id: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
}

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Over the size limit: nothing is kept.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The upload's body broke off or was empty: the client's to fix; nothing is kept.
    #[error("{0:#}")]
    Body(anyhow::Error),
    /// Writing the store failed: worth a retry later; nothing is kept.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Why a staged file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It is not staged (removed, moved, never there): opening again will not find it.
    #[error("the staged file is gone: {0:#}")]
    Gone(anyhow::Error),
    /// The store did not answer: the file may be there once it does.
    #[error("the staging area is unreachable: {0:#}")]
    Store(anyhow::Error),
}

/// A staged file's bytes, as a worker reads them.
pub type StagedReader = Box<dyn AsyncRead + Send + Unpin>;

/// The staging area, in the backend the operator chose.
#[derive(Debug, Clone)]
pub enum Staging {
    /// A directory on this machine (or a shared mount).
    Local(LocalStaging),
    /// GridFS in the platform database.
    GridFs(GridFsStaging),
}

impl Staging {
    /// The staging area under `dir` (created if missing).
    pub fn local(dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self::Local(LocalStaging::new(dir)?))
    }

    /// The staging area in the GridFS bucket `staging` of `database`.
    pub fn gridfs(database: &mongodb::Database) -> Self {
        Self::GridFs(GridFsStaging::new(database))
    }

    /// Streams an upload in, at most `limit` bytes, and stages it. On any error what was
    /// written is removed: a failed upload leaves nothing staged.
    pub async fn stage<S, E>(
        &self,
        tenant: &str,
        body: S,
        limit: u64,
    ) -> Result<StagedFile, StageError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        match self {
            Self::Local(local) => local.stage(tenant, body, limit).await,
            Self::GridFs(gridfs) => gridfs.stage(tenant, body, limit).await,
        }
    }

    /// Opens a staged file for reading.
    pub async fn open(&self, tenant: &str, id: &str) -> Result<StagedReader, OpenError> {
        match self {
            Self::Local(local) => Ok(Box::new(local.open(tenant, id).await?)),
            Self::GridFs(gridfs) => gridfs.open(tenant, id).await,
        }
    }

    /// Whether a staged file is there.
    pub async fn exists(&self, tenant: &str, id: &str) -> Result<bool> {
        match self {
            Self::Local(local) => Ok(local.exists(tenant, id).await),
            Self::GridFs(gridfs) => gridfs.exists(tenant, id).await,
        }
    }

    /// Removes a staged file (after success, or a refused request).
    pub async fn remove(&self, tenant: &str, id: &str) -> Result<()> {
        match self {
            Self::Local(local) => local.remove(tenant, id).await,
            Self::GridFs(gridfs) => gridfs.remove(tenant, id).await,
        }
    }

    /// Moves a staged file to the archive.
    pub async fn archive(&self, tenant: &str, id: &str) -> Result<()> {
        match self {
            Self::Local(local) => local.archive(tenant, id).await,
            Self::GridFs(gridfs) => gridfs.archive(tenant, id).await,
        }
    }

    /// Moves a staged file to quarantine, with the reason beside it.
    pub async fn quarantine(&self, tenant: &str, id: &str, reason: &str) -> Result<()> {
        match self {
            Self::Local(local) => local.quarantine(tenant, id, reason).await,
            Self::GridFs(gridfs) => gridfs.quarantine(tenant, id, reason).await,
        }
    }

    /// Moves a quarantined file back to staging (for a replay); a file not in quarantine is
    /// left as it is.
    pub async fn release(&self, tenant: &str, id: &str) -> Result<()> {
        match self {
            Self::Local(local) => local.release(tenant, id).await,
            Self::GridFs(gridfs) => gridfs.release(tenant, id).await,
        }
    }

    /// Removes the partial uploads of dead requests (every tenant's) whose last sign of
    /// life is more than `max_age` old; returns how many.
    pub async fn sweep_incoming(&self, max_age: Duration) -> Result<usize> {
        match self {
            Self::Local(local) => local.sweep_incoming(max_age).await,
            Self::GridFs(gridfs) => gridfs.sweep_incoming(max_age).await,
        }
    }

    /// Sweeps `incoming` now and then every [`sweep_period`] of `max_age` until `stop`
    /// turns true, logging what each sweep removed.
    pub async fn sweep_periodically(
        self,
        max_age: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let period = sweep_period(max_age);
        loop {
            match self.sweep_incoming(max_age).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    ?max_age,
                    "removed partial uploads of dead requests from the staging area"
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "sweeping partial uploads failed")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

/// How often `incoming` is swept: a quarter of the age, so a dead upload is gone at most
/// 1.25 × the age after its last sign of life; at least every second, at most every minute.
pub fn sweep_period(max_age: Duration) -> Duration {
    (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// A new staged file id: 128 random bits, in hex.
fn new_id() -> Result<String> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).context("reading the OS's random source")?;
    Ok(hex::encode(random))
}

/// Copies an upload into `sink`, at most `limit` bytes, and says its size and SHA-256. Memory
/// holds one of the body's chunks at a time (and whatever `sink` buffers). An empty upload is
/// refused: there is nothing to ingest.
async fn copy_limited<S, E, W>(
    mut body: S,
    limit: u64,
    sink: &mut W,
) -> Result<(u64, String), StageError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
    W: AsyncWrite + Unpin,
{
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| StageError::Body(anyhow::anyhow!("reading the upload: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(StageError::TooLarge { limit });
        }
        hasher.update(&chunk);
        sink.write_all(&chunk)
            .await
            .context("writing the staged file")?;
    }
    if size == 0 {
        return Err(StageError::Body(anyhow::anyhow!("the file is empty")));
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Refuses ids that could leave the tenant's area.
pub fn check_id(id: &str) -> Result<()> {
    if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{id:?} is not a staged file id");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_come_at_a_quarter_of_the_age_within_bounds() {
        assert_eq!(
            sweep_period(Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sweep_period(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(sweep_period(Duration::from_secs(2)), Duration::from_secs(1));
    }

    #[test]
    fn ids_cannot_leave_the_tenants_area() {
        assert!(check_id("../../etc/passwd").is_err());
        check_id(&"a".repeat(32)).unwrap();
        assert_eq!(new_id().unwrap().len(), 32);
    }
}
