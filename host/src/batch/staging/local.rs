//! The directory backend of the staging area: one directory, per tenant and area.
//!
//! ```text
//! <dir>/<tenant>/incoming/<file id>      written while the upload streams in (never read)
//! <dir>/<tenant>/staged/<file id>        complete, waiting for or in ingestion
//! <dir>/<tenant>/archive/<file id>       ingested, kept (profile: after_success = "archive")
//! <dir>/<tenant>/quarantine/<file id>    failed for good, with <file id>.reason beside it
//! ```
//!
//! Every host running workers must see the same directory: one machine's disk, or a shared
//! mount (NFS, EFS, …) across machines. [`super::gridfs`] needs neither.
//!
//! A request that dies mid-upload (its host killed) leaves its partial file in `incoming`.
//! Every host sweeps `incoming` periodically and removes files whose last write (mtime) is
//! older than `batch.incoming_max_age_secs`: an upload in progress writes at least once per
//! body idle timeout, which the configuration keeps below that age.

use super::{OpenError, StageError, StagedFile, copy_limited, new_id};
use anyhow::{Context, Result};
use futures_util::Stream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// The staging area in a directory.
#[derive(Debug, Clone)]
pub struct LocalStaging {
    dir: PathBuf,
}

impl LocalStaging {
    /// The staging area under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating staging dir {dir:?}"))?;
        Ok(Self { dir })
    }

    fn path(&self, tenant: &str, area: &str, id: &str) -> PathBuf {
        self.dir.join(tenant).join(area).join(id)
    }

    /// Streams an upload to disk, at most `limit` bytes, and stages it. On any error the
    /// partial file is removed: a failed upload leaves nothing behind.
    pub async fn stage<S, E>(
        &self,
        tenant: &str,
        body: S,
        limit: u64,
    ) -> Result<StagedFile, StageError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = new_id()?;
        let incoming = self.path(tenant, "incoming", &id);
        let staged = self.path(tenant, "staged", &id);
        for dir in [&incoming, &staged] {
            if let Some(parent) = dir.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .with_context(|| format!("creating {parent:?}"))?;
            }
        }
        let result = write(&incoming, body, limit).await;
        match result {
            Ok((size, sha256)) => {
                tokio::fs::rename(&incoming, &staged)
                    .await
                    .with_context(|| format!("moving {incoming:?} to {staged:?}"))?;
                Ok(StagedFile { id, size, sha256 })
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&incoming).await;
                Err(e)
            }
        }
    }

    /// Opens a staged file.
    pub async fn open(&self, tenant: &str, id: &str) -> Result<tokio::fs::File, OpenError> {
        let path = self.path(tenant, "staged", id);
        tokio::fs::File::open(&path).await.map_err(|e| {
            let gone = e.kind() == std::io::ErrorKind::NotFound;
            let e = anyhow::Error::new(e).context(format!("opening staged file {path:?}"));
            if gone {
                OpenError::Gone(e)
            } else {
                OpenError::Store(e)
            }
        })
    }

    /// Whether a staged file is there.
    pub async fn exists(&self, tenant: &str, id: &str) -> bool {
        tokio::fs::metadata(self.path(tenant, "staged", id))
            .await
            .is_ok()
    }

    /// Removes a staged file (after success, or a refused request).
    pub async fn remove(&self, tenant: &str, id: &str) -> Result<()> {
        remove_if_present(&self.path(tenant, "staged", id)).await
    }

    /// Moves a staged file to the archive.
    pub async fn archive(&self, tenant: &str, id: &str) -> Result<()> {
        self.move_to(tenant, id, "archive").await
    }

    /// Moves a staged file to quarantine, with the reason beside it.
    pub async fn quarantine(&self, tenant: &str, id: &str, reason: &str) -> Result<()> {
        self.move_to(tenant, id, "quarantine").await?;
        let note = self.path(tenant, "quarantine", &format!("{id}.reason"));
        tokio::fs::write(&note, reason)
            .await
            .with_context(|| format!("writing {note:?}"))
    }

    /// Moves a quarantined file back to staging (for a replay).
    pub async fn release(&self, tenant: &str, id: &str) -> Result<()> {
        let from = self.path(tenant, "quarantine", id);
        if tokio::fs::metadata(&from).await.is_err() {
            return Ok(());
        }
        let to = self.path(tenant, "staged", id);
        tokio::fs::rename(&from, &to)
            .await
            .with_context(|| format!("moving {from:?} to {to:?}"))?;
        remove_if_present(&self.path(tenant, "quarantine", &format!("{id}.reason"))).await
    }

    async fn move_to(&self, tenant: &str, id: &str, area: &str) -> Result<()> {
        let from = self.path(tenant, "staged", id);
        let to = self.path(tenant, area, id);
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("creating {parent:?}"))?;
        }
        match tokio::fs::rename(&from, &to).await {
            Ok(()) => Ok(()),
            // Already moved by an earlier attempt that died before settling.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("moving {from:?} to {to:?}")),
        }
    }
}

impl LocalStaging {
    /// Removes the partial uploads (every tenant's `incoming` files) last written more than
    /// `max_age` ago; returns how many. A file that disappears meanwhile (its upload just
    /// finished and moved it) is no error.
    pub async fn sweep_incoming(&self, max_age: Duration) -> Result<usize> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep_incoming(&dir, max_age, SystemTime::now()))
            .await
            .context("the staging sweep panicked")?
    }
}

/// Whether a file last written at `modified` is older than `max_age` at `now` (a time in
/// the future, a clock step back, is not).
fn is_stale(modified: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(modified).is_ok_and(|age| age > max_age)
}

fn sweep_incoming(dir: &Path, max_age: Duration, now: SystemTime) -> Result<usize> {
    let mut removed = 0;
    let tenants = match std::fs::read_dir(dir) {
        Ok(tenants) => tenants,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("listing {dir:?}")),
    };
    for tenant in tenants.flatten() {
        let incoming = tenant.path().join("incoming");
        let Ok(files) = std::fs::read_dir(&incoming) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            let Ok(metadata) = file.metadata() else {
                continue;
            };
            let stale = metadata.is_file()
                && metadata
                    .modified()
                    .is_ok_and(|modified| is_stale(modified, now, max_age));
            if !stale {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial upload")
                }
            }
        }
    }
    Ok(removed)
}

async fn write<S, E>(path: &Path, body: S, limit: u64) -> Result<(u64, String), StageError>
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("creating {path:?}"))?;
    let written = copy_limited(body, limit, &mut file).await?;
    file.flush().await.context("flushing the staged file")?;
    file.sync_all().await.context("syncing the staged file")?;
    Ok(written)
}

async fn remove_if_present(path: &Path) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {path:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<bytes::Bytes, String>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mysimbdp-staging-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn files_move_through_their_areas() {
        let dir = scratch();
        let staging = LocalStaging::new(&dir).unwrap();
        let file = staging
            .stage("acme", chunks(&[b"a,b\n", b"1,2\n"]), 100)
            .await
            .unwrap();
        assert_eq!(file.size, 8);
        assert_eq!(file.sha256, hex::encode(Sha256::digest(b"a,b\n1,2\n")));
        assert!(staging.exists("acme", &file.id).await);
        assert!(!staging.exists("other", &file.id).await);
        staging
            .quarantine("acme", &file.id, "reject: bad")
            .await
            .unwrap();
        assert!(!staging.exists("acme", &file.id).await);
        let reason = dir
            .join("acme/quarantine")
            .join(format!("{}.reason", file.id));
        assert_eq!(std::fs::read_to_string(reason).unwrap(), "reject: bad");
        staging.release("acme", &file.id).await.unwrap();
        staging.archive("acme", &file.id).await.unwrap();
        assert!(dir.join("acme/archive").join(&file.id).exists());
        staging.archive("acme", &file.id).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_oversized_or_empty_upload_leaves_nothing() {
        let dir = scratch();
        let staging = LocalStaging::new(&dir).unwrap();
        let error = staging
            .stage("acme", chunks(&[b"12345", b"67890"]), 8)
            .await
            .unwrap_err();
        assert!(matches!(error, StageError::TooLarge { limit: 8 }));
        assert!(staging.stage("acme", chunks(&[]), 8).await.is_err());
        for area in ["incoming", "staged"] {
            let left = std::fs::read_dir(dir.join("acme").join(area))
                .unwrap()
                .count();
            assert_eq!(left, 0, "{area} kept a refused upload");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn staleness_is_by_age_since_the_last_write() {
        let now = SystemTime::now();
        let age = Duration::from_secs(900);
        assert!(is_stale(now - Duration::from_secs(901), now, age));
        assert!(!is_stale(now - Duration::from_secs(899), now, age));
        assert!(!is_stale(now + Duration::from_secs(60), now, age));
    }

    #[tokio::test]
    async fn the_sweep_removes_old_partial_uploads_only() {
        let dir = scratch();
        let staging = LocalStaging::new(&dir).unwrap();
        let incoming = dir.join("acme/incoming");
        std::fs::create_dir_all(&incoming).unwrap();
        std::fs::create_dir_all(dir.join("acme/staged")).unwrap();
        let old = incoming.join("old");
        let fresh = incoming.join("fresh");
        let staged = dir.join("acme/staged/old");
        for path in [&old, &fresh, &staged] {
            std::fs::write(path, b"partial").unwrap();
        }
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for path in [&old, &staged] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
        }
        let removed = staging
            .sweep_incoming(Duration::from_secs(900))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert!(!old.exists());
        assert!(fresh.exists());
        assert!(staged.exists(), "only incoming is swept");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
