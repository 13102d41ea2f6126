//! The GridFS backend of the staging area: staged files as GridFS files of the bucket
//! `staging` in the platform database, so every host reaches every file and an upload
//! outlives the host that received it (the replica set keeps it).
//!
//! ```text
//! staging.files     one document per file: _id = the file id, length, chunkSize, and
//!                   metadata { tenant, area, sha256, reason }
//! staging.chunks    its bytes, in chunks of 255 KiB
//! staging.uploads   one marker per upload in progress: _id, tenant, touched
//! ```
//!
//! An upload writes its chunks as they come (memory: one chunk), then its files document
//! with `area: incoming`, then marks it `staged` with its SHA-256, then deletes its marker.
//! While it streams in, its request touches the marker every [`super::sweep_period`]; the
//! periodic sweep removes, with their chunks, the uploads whose marker nobody touched for
//! `batch.incoming_max_age_secs` (their request died with its host). Marker times are the
//! server's (`$currentDate`, `$$NOW`), so hosts' clocks do not matter. The sweep claims a
//! marker by deleting it while it is still stale, and an upload touches its marker once more
//! before it marks its file staged: whichever comes first wins, so a live upload is never
//! both swept and accepted.
//!
//! A read fetches four chunks per round trip (about 1 MiB), checks each chunk's number and
//! size, and at the end the length and SHA-256 recorded at upload: a file damaged in the
//! store fails its job instead of feeding the app wrong bytes. A cursor lost midway (a
//! primary's failover) is resumed from the next chunk.
//!
//! Moving between areas rewrites `metadata.area` of the files document, filtered by tenant
//! and area, so a tenant never reaches another's file and a repeated move is a no-op.

use super::{OpenError, StageError, StagedFile, StagedReader, copy_limited, new_id, sweep_period};
use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::GridFsBucketOptions;
use mongodb::{Collection, Cursor, Database};
use sha2::{Digest, Sha256};
use std::io;
use std::time::Duration;
use tokio_util::compat::FuturesAsyncWriteCompatExt;

/// The bucket's name: its collections are `staging.files` and `staging.chunks`.
const BUCKET: &str = "staging";

/// Chunks fetched per round trip when a file is read: the reader's memory bound.
const READ_BATCH: u32 = 4;

/// Times a read resumes its cursor after losing it, before it gives up.
const RESUMES: u32 = 3;

/// The areas, as `metadata.area` holds them.
const INCOMING: &str = "incoming";
const STAGED: &str = "staged";
const ARCHIVE: &str = "archive";
const QUARANTINE: &str = "quarantine";

/// The staging area in GridFS.
#[derive(Debug, Clone)]
pub struct GridFsStaging {
    bucket: GridFsBucket,
    files: Collection<Document>,
    chunks: Collection<Document>,
    uploads: Collection<Document>,
    max_age: Duration,
}

impl GridFsStaging {
    /// The bucket `staging` of `database`. Nothing is reached before first use.
    pub fn new(database: &Database) -> Self {
        Self {
            bucket: database.gridfs_bucket(
                GridFsBucketOptions::builder()
                    .bucket_name(BUCKET.to_owned())
                    .build(),
            ),
            files: database.collection(&format!("{BUCKET}.files")),
            chunks: database.collection(&format!("{BUCKET}.chunks")),
            uploads: database.collection(&format!("{BUCKET}.uploads")),
            max_age: Duration::from_secs(crate::config::DEFAULT_INCOMING_MAX_AGE_SECS),
        }
    }

    /// The same, with partial uploads taken as dead after `max_age` without a sign of life
    /// (the period their requests touch their markers derives from it).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Streams an upload into GridFS, at most `limit` bytes, and stages it. On any error
    /// what was written is removed (or, if even that fails, left to the sweep).
    pub async fn stage<S, E>(
        &self,
        tenant: &str,
        body: S,
        limit: u64,
    ) -> Result<StagedFile, StageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let id = new_id()?;
        self.uploads
            .update_one(
                doc! { "_id": &id },
                doc! { "$currentDate": { "touched": true }, "$setOnInsert": { "tenant": tenant } },
            )
            .upsert(true)
            .await
            .context("recording an upload in the staging area")?;
        let staged = tokio::select! {
            staged = self.write(tenant, &id, body, limit) => staged,
            () = self.keep_alive(&id) => unreachable!("the keep-alive never ends"),
        };
        match staged {
            Ok((size, sha256)) => {
                // A marker left behind is harmless: the sweep drops it and keeps the file.
                if let Err(e) = self.uploads.delete_one(doc! { "_id": &id }).await {
                    tracing::warn!(file = %id, error = %e, "an upload's marker was not removed");
                }
                Ok(StagedFile { id, size, sha256 })
            }
            Err(e) => {
                match self.delete(&id).await {
                    Ok(()) => {
                        let _ = self.uploads.delete_one(doc! { "_id": &id }).await;
                    }
                    // The marker stays, so the sweep removes the file once it is stale.
                    Err(cleanup) => {
                        tracing::warn!(file = %id, error = %format!("{cleanup:#}"), "a failed upload could not be removed; the sweep will")
                    }
                }
                Err(e)
            }
        }
    }

    /// Writes the chunks and the files document, then marks the file staged.
    async fn write<S, E>(
        &self,
        tenant: &str,
        id: &str,
        body: S,
        limit: u64,
    ) -> Result<(u64, String), StageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut upload = self
            .bucket
            .open_upload_stream(id)
            .id(Bson::String(id.to_owned()))
            .metadata(doc! { "tenant": tenant, "area": INCOMING })
            .await
            .context("opening a GridFS upload")?;
        let copied = copy_limited(body, limit, &mut (&mut upload).compat_write()).await;
        let (size, sha256) = match copied {
            Ok(copied) => copied,
            Err(e) => {
                // Removes the chunks written so far.
                let _ = upload.abort().await;
                return Err(e);
            }
        };
        futures_util::AsyncWriteExt::close(&mut upload)
            .await
            .context("closing the GridFS upload")?;
        // The last sign of life: if the sweep took this upload for dead meanwhile (its
        // marker is gone), the file is not accepted.
        if !self.touch(id).await? {
            return Err(anyhow!(
                "the upload outlived batch.incoming_max_age_secs without a sign of life and \
                 was swept"
            )
            .into());
        }
        let marked = self
            .files
            .update_one(
                doc! { "_id": id, "metadata.area": INCOMING },
                doc! { "$set": { "metadata.area": STAGED, "metadata.sha256": &sha256 } },
            )
            .await
            .context("marking the upload staged")?;
        if marked.matched_count != 1 {
            return Err(anyhow!("the upload's file vanished before it was staged").into());
        }
        Ok((size, sha256))
    }

    /// Touches the upload's marker every sweep period, for ever: the sign of life that keeps
    /// the sweep away from an upload still streaming in.
    async fn keep_alive(&self, id: &str) {
        let mut ticks = tokio::time::interval(sweep_period(self.max_age));
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(e) = self.touch(id).await {
                tracing::warn!(file = %id, error = %format!("{e:#}"), "an upload's sign of life was not recorded");
            }
        }
    }

    /// Records a sign of life of upload `id` (the server's time); false when its marker is
    /// gone (swept).
    async fn touch(&self, id: &str) -> Result<bool> {
        let touched = self
            .uploads
            .update_one(
                doc! { "_id": id },
                doc! { "$currentDate": { "touched": true } },
            )
            .await
            .context("recording an upload's sign of life")?;
        Ok(touched.matched_count == 1)
    }

    /// Creates the indexes reads and sweeps rely on. The driver creates the chunks' index
    /// only when the bucket's first file is at least a chunk long; without it every read
    /// and delete would scan every staged byte.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let index = |keys: Document, unique: bool| {
            mongodb::IndexModel::builder()
                .keys(keys)
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(unique)
                        .build(),
                )
                .build()
        };
        self.chunks
            .create_index(index(doc! { "files_id": 1, "n": 1 }, true))
            .await
            .context("indexing staging.chunks")?;
        self.files
            .create_index(index(doc! { "filename": 1, "uploadDate": 1 }, false))
            .await
            .context("indexing staging.files")?;
        self.uploads
            .create_index(index(doc! { "touched": 1 }, false))
            .await
            .context("indexing staging.uploads")?;
        Ok(())
    }

    /// Opens a staged file of the tenant's.
    pub async fn open(&self, tenant: &str, id: &str) -> Result<StagedReader, OpenError> {
        let file = self
            .files
            .find_one(doc! { "_id": id, "metadata.tenant": tenant, "metadata.area": STAGED })
            .await
            .with_context(|| format!("looking up staged file {id}"))
            .map_err(OpenError::Store)?
            .ok_or_else(|| OpenError::Gone(anyhow!("staged file {id} is not in GridFS")))?;
        // A files document without its length or checksum is damaged: reading again will
        // not mend it.
        let expected = Expected::of(&file)
            .with_context(|| format!("staged file {id}"))
            .map_err(OpenError::Gone)?;
        let cursor = chunks_from(&self.chunks, id, 0)
            .await
            .with_context(|| format!("reading staged file {id}"))
            .map_err(OpenError::Store)?;
        let reading = Reading {
            id: id.to_owned(),
            chunks: self.chunks.clone(),
            cursor,
            expected,
            next: 0,
            read: 0,
            hasher: Sha256::new(),
        };
        let chunks = futures_util::stream::try_unfold(reading, |mut reading| async move {
            Ok::<_, io::Error>(reading.next_chunk().await?.map(|chunk| (chunk, reading)))
        });
        Ok(Box::new(tokio_util::io::StreamReader::new(Box::pin(
            chunks,
        ))))
    }

    /// Whether a staged file of the tenant's is there.
    pub async fn exists(&self, tenant: &str, id: &str) -> Result<bool> {
        Ok(self
            .files
            .find_one(doc! { "_id": id, "metadata.tenant": tenant, "metadata.area": STAGED })
            .projection(doc! { "_id": 1 })
            .await
            .with_context(|| format!("looking up staged file {id}"))?
            .is_some())
    }

    /// Removes a staged file: its chunks, then its files document (so a crash in between
    /// leaves a file that fails to read, never chunks nothing points to).
    pub async fn remove(&self, tenant: &str, id: &str) -> Result<()> {
        if self.exists(tenant, id).await? {
            self.delete(id).await?;
        }
        Ok(())
    }

    /// Moves a staged file to the archive.
    pub async fn archive(&self, tenant: &str, id: &str) -> Result<()> {
        self.move_to(tenant, id, STAGED, doc! { "metadata.area": ARCHIVE })
            .await
    }

    /// Moves a staged file to quarantine, with the reason.
    pub async fn quarantine(&self, tenant: &str, id: &str, reason: &str) -> Result<()> {
        self.move_to(
            tenant,
            id,
            STAGED,
            doc! { "metadata.area": QUARANTINE, "metadata.reason": reason },
        )
        .await
    }

    /// Moves a quarantined file back to staging (for a replay).
    pub async fn release(&self, tenant: &str, id: &str) -> Result<()> {
        self.move_to(tenant, id, QUARANTINE, doc! { "metadata.area": STAGED })
            .await
    }

    /// Sets `set` on the tenant's file `id` if it is in `from`; a file elsewhere (moved by an
    /// earlier attempt) is left as it is.
    async fn move_to(&self, tenant: &str, id: &str, from: &str, set: Document) -> Result<()> {
        let mut update = doc! { "$set": set };
        if from == QUARANTINE {
            update.insert("$unset", doc! { "metadata.reason": "" });
        }
        self.files
            .update_one(
                doc! { "_id": id, "metadata.tenant": tenant, "metadata.area": from },
                update,
            )
            .await
            .with_context(|| format!("moving staged file {id} out of {from}"))?;
        Ok(())
    }

    /// Deletes a file's chunks, then its files document.
    async fn delete(&self, id: &str) -> Result<()> {
        self.chunks
            .delete_many(doc! { "files_id": id })
            .await
            .with_context(|| format!("deleting the chunks of staged file {id}"))?;
        self.files
            .delete_one(doc! { "_id": id })
            .await
            .with_context(|| format!("deleting staged file {id}"))?;
        Ok(())
    }

    /// Removes the uploads whose marker nobody touched for `max_age` (their request died),
    /// with whatever they wrote; returns how many.
    pub async fn sweep_incoming(&self, max_age: Duration) -> Result<usize> {
        let age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        // On the server's clock: the uploading host's may differ from this one's.
        let stale = doc! {
            "$expr": { "$lt": ["$touched", { "$subtract": ["$$NOW", age_ms] }] }
        };
        let dead: Vec<Document> = self
            .uploads
            .find(stale.clone())
            .projection(doc! { "_id": 1 })
            .await
            .context("listing stale uploads")?
            .try_collect()
            .await
            .context("listing stale uploads")?;
        let mut removed = 0;
        for upload in dead {
            let Ok(id) = upload.get_str("_id") else {
                continue;
            };
            // Claimed by deleting the marker while it is still stale: an upload that touched
            // it meanwhile (or another host's sweep) keeps it.
            let mut claim = stale.clone();
            claim.insert("_id", id);
            let claimed = self
                .uploads
                .delete_one(claim)
                .await
                .context("claiming a stale upload")?;
            if claimed.deleted_count != 1 {
                continue;
            }
            // A file the upload finished (its host died before removing the marker) is the
            // tenant's: only an unfinished one goes.
            let finished = self
                .files
                .find_one(doc! { "_id": id, "metadata.area": { "$ne": INCOMING } })
                .projection(doc! { "_id": 1 })
                .await
                .context("looking up a stale upload's file")?
                .is_some();
            if !finished {
                self.chunks
                    .delete_many(doc! { "files_id": id })
                    .await
                    .context("deleting a dead upload's chunks")?;
                self.files
                    .delete_one(doc! { "_id": id, "metadata.area": INCOMING })
                    .await
                    .context("deleting a dead upload's file")?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The chunks of file `id` from chunk `from` on, in order, four per round trip.
async fn chunks_from(
    chunks: &Collection<Document>,
    id: &str,
    from: i64,
) -> mongodb::error::Result<Cursor<Document>> {
    chunks
        .find(doc! { "files_id": id, "n": { "$gte": from } })
        .sort(doc! { "n": 1 })
        .batch_size(READ_BATCH)
        .await
}

/// An integer field as GridFS writes it: 32-bit or 64-bit, by its size.
fn integer(document: &Document, key: &str) -> Option<i64> {
    match document.get(key)? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

/// What a file's chunks must add up to, from its files document.
#[derive(Debug)]
struct Expected {
    length: u64,
    chunk_size: u64,
    sha256: String,
}

impl Expected {
    fn of(file: &Document) -> Result<Self> {
        let number = |key: &str| -> Result<u64> {
            let value =
                integer(file, key).ok_or_else(|| anyhow!("its files document has no {key}"))?;
            u64::try_from(value).map_err(|_| anyhow!("its {key} is negative"))
        };
        let sha256 = file
            .get_document("metadata")
            .and_then(|metadata| metadata.get_str("sha256"))
            .context("its files document has no SHA-256")?
            .to_owned();
        Ok(Self {
            length: number("length")?,
            chunk_size: number("chunkSize")?.max(1),
            sha256,
        })
    }
}

/// A file being read: where its chunks are, and what they must add up to.
struct Reading {
    id: String,
    chunks: Collection<Document>,
    cursor: Cursor<Document>,
    expected: Expected,
    next: i64,
    read: u64,
    hasher: Sha256,
}

impl Reading {
    /// The next chunk's bytes, or `None` at the end once the file checked out whole.
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let Some(chunk) = self.next_document().await? else {
            return self.finish().map(|()| None);
        };
        let n = integer(&chunk, "n").unwrap_or(-1);
        let data = chunk
            .get_binary_generic("data")
            .map_err(|_| self.damaged(format!("chunk {n} has no data")))?;
        if n != self.next {
            return Err(self.damaged(format!("chunk {} is missing", self.next)));
        }
        let len = data.len() as u64;
        if len > self.expected.chunk_size || self.read + len > self.expected.length {
            return Err(self.damaged(format!("chunk {n} is too long")));
        }
        self.next += 1;
        self.read += len;
        self.hasher.update(data);
        Ok(Some(Bytes::copy_from_slice(data)))
    }

    /// The next chunk's document. A cursor lost midway (a failover, a timed-out idle cursor
    /// while a slow sink held the app back) is opened again from the next chunk, a few times.
    async fn next_document(&mut self) -> io::Result<Option<Document>> {
        let mut resumed = 0;
        loop {
            let error = match self.cursor.try_next().await {
                Ok(chunk) => return Ok(chunk),
                Err(error) => error,
            };
            if resumed == RESUMES {
                return Err(io::Error::other(format!(
                    "reading staged file {} from GridFS: {error}",
                    self.id
                )));
            }
            resumed += 1;
            tracing::warn!(file = %self.id, chunk = self.next, %error, "resuming a staged file's read");
            tokio::time::sleep(Duration::from_millis(250 << resumed)).await;
            if let Ok(cursor) = chunks_from(&self.chunks, &self.id, self.next).await {
                self.cursor = cursor;
            }
        }
    }

    /// Checks the whole file came: its length and checksum.
    fn finish(&mut self) -> io::Result<()> {
        if self.read != self.expected.length {
            return Err(self.damaged(format!(
                "{} of its {} bytes are there",
                self.read, self.expected.length
            )));
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if sha256 != self.expected.sha256 {
            return Err(self.damaged("its SHA-256 is not the upload's".to_owned()));
        }
        Ok(())
    }

    fn damaged(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("staged file {} is damaged in GridFS: {what}", self.id),
        )
    }
}
