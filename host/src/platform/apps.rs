//! Apps, their immutable versions, and the components (in GridFS) in the platform database.
//!
//! An app is a tenant's name for a line of versions of one kind (batch or stream); a version
//! is a component's content digest. The app record holds which version is active and the
//! ones that were active before it, so a rollback is one conditional update.

use super::{Platform, StoreError, StoreResult, conflict_or, is_duplicate_key};
use crate::config::SandboxOverrides;
use futures_util::TryStreamExt;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{self, Bson, DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mysimbdp_api::AppKind;
use serde::{Deserialize, Serialize};

/// Previously active versions remembered for rollbacks.
const HISTORY_LIMIT: i32 = 20;

/// An app as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    /// `<tenant>/<name>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The app's name within the tenant.
    pub name: String,
    /// Batch or stream: fixed by the first upload.
    pub kind: AppKind,
    /// The active version's digest.
    pub active: Option<String>,
    /// Versions active before, most recent last.
    pub history: Vec<String>,
    /// The app's own sandbox limits, within the tenant profile's.
    pub sandbox: SandboxOverrides,
    /// Bumped by every change: the guard of conditional updates.
    pub revision: i64,
    /// When the app was created.
    pub created_at: DateTime,
    /// When it last changed.
    pub updated_at: DateTime,
}

/// One immutable version of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// `<tenant>/<app>@<digest>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The app's name.
    pub app: String,
    /// The component's SHA-256 (hex): the version id.
    pub digest: String,
    /// Batch or stream.
    pub kind: AppKind,
    /// Component size in bytes.
    pub size: i64,
    /// What it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// The component in GridFS.
    pub blob: ObjectId,
    /// When it was uploaded.
    pub uploaded_at: DateTime,
    /// Compile time at upload, in ms.
    pub compile_ms: f64,
    /// Fuel the admission probe burned.
    pub probe_fuel: i64,
    /// The sandbox preset chosen at upload (`rust`, `python`, `js`, …): its limits replace
    /// the operator's defaults for this version's calls. None: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
}

/// What an admitted upload brings to the store.
pub struct NewVersion<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The app's name.
    pub app: &'a str,
    /// The component.
    pub wasm: &'a [u8],
    /// Its digest.
    pub digest: &'a str,
    /// Its kind.
    pub kind: AppKind,
    /// Its imports.
    pub imports: &'a [String],
    /// Its exports.
    pub exports: &'a [String],
    /// Compile time.
    pub compile_ms: f64,
    /// Probe fuel.
    pub probe_fuel: u64,
    /// The preset chosen at upload.
    pub preset: Option<&'a str>,
}

impl Platform {
    /// One app of a tenant.
    pub async fn app(&self, tenant: &str, name: &str) -> StoreResult<AppRecord> {
        self.apps
            .find_one(doc! { "_id": app_id(tenant, name) })
            .await?
            .ok_or_else(|| app_not_found(name))
    }

    /// A tenant's apps, by name.
    pub async fn list_apps(&self, tenant: &str) -> StoreResult<Vec<AppRecord>> {
        Ok(self
            .apps
            .find(doc! { "tenant": tenant })
            .sort(doc! { "name": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// An app's versions, newest first.
    pub async fn list_versions(&self, tenant: &str, app: &str) -> StoreResult<Vec<VersionRecord>> {
        Ok(self
            .versions
            .find(doc! { "tenant": tenant, "app": app })
            .sort(doc! { "uploaded_at": -1 })
            .await?
            .try_collect()
            .await?)
    }

    /// One version, by full digest or by a unique prefix of at least 8 hex digits.
    pub async fn version(
        &self,
        tenant: &str,
        app: &str,
        version: &str,
    ) -> StoreResult<VersionRecord> {
        let version = version.strip_prefix("sha256:").unwrap_or(version);
        let well_formed = (8..=64).contains(&version.len())
            && version
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        if !well_formed {
            return Err(StoreError::NotFound(format!(
                "{version:?} is not a version id (8 to 64 lowercase hex digits of the component's sha256)"
            )));
        }
        let found: Vec<VersionRecord> = self
            .versions
            .find(doc! {
                "tenant": tenant,
                "app": app,
                "digest": { "$regex": format!("^{version}") },
            })
            .limit(2)
            .await?
            .try_collect()
            .await?;
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(StoreError::NotFound(format!(
                "app {app:?} has no version {version}"
            ))),
            _ => Err(StoreError::Conflict(format!(
                "version prefix {version} matches several versions of app {app:?}; give more digits"
            ))),
        }
    }

    /// Stores an admitted version: the component in GridFS, then its record; creates the app
    /// if it is new. Returns the version and whether it was new (an identical re-upload is
    /// not). `Conflict` if the app exists with the other kind.
    pub async fn store_version(&self, new: NewVersion<'_>) -> StoreResult<(VersionRecord, bool)> {
        let existing_app = self
            .apps
            .find_one(doc! { "_id": app_id(new.tenant, new.app) })
            .await?;
        if let Some(app) = &existing_app
            && app.kind != new.kind
        {
            return Err(StoreError::Conflict(format!(
                "app {:?} is a {} app and this component is a {} app; upload it under another name",
                new.app, app.kind, new.kind
            )));
        }
        let id = version_id(new.tenant, new.app, new.digest);
        if let Some(mut found) = self.versions.find_one(doc! { "_id": &id }).await? {
            // The same component uploaded again under another preset (admitted under it):
            // the version now runs under that preset.
            if found.preset.as_deref() != new.preset {
                self.versions
                    .update_one(
                        doc! { "_id": &id },
                        doc! { "$set": { "preset": new.preset } },
                    )
                    .await?;
                found.preset = new.preset.map(str::to_owned);
            }
            return Ok((found, false));
        }
        // Each upload writes its own blob; the version record's unique id decides which one
        // is kept when two hosts store the same version at once, and the loser removes its
        // own. (Sharing a GridFS id would let one writer's abort delete the other's chunks.)
        let blob = self.write_blob(&id, new.wasm).await?;
        let now = DateTime::now();
        let record = VersionRecord {
            id: id.clone(),
            tenant: new.tenant.to_owned(),
            app: new.app.to_owned(),
            digest: new.digest.to_owned(),
            kind: new.kind,
            size: i64::try_from(new.wasm.len()).unwrap_or(i64::MAX),
            imports: new.imports.to_vec(),
            exports: new.exports.to_vec(),
            blob,
            uploaded_at: now,
            compile_ms: new.compile_ms,
            probe_fuel: i64::try_from(new.probe_fuel).unwrap_or(i64::MAX),
            preset: new.preset.map(str::to_owned),
        };
        if existing_app.is_none() {
            let app = AppRecord {
                id: app_id(new.tenant, new.app),
                tenant: new.tenant.to_owned(),
                name: new.app.to_owned(),
                kind: new.kind,
                active: None,
                history: Vec::new(),
                sandbox: SandboxOverrides::default(),
                revision: 0,
                created_at: now,
                updated_at: now,
            };
            match self.apps.insert_one(&app).await {
                Err(e) if is_duplicate_key(&e) => {
                    // Created concurrently: fine if of the same kind.
                    let app = self.app(new.tenant, new.app).await?;
                    if app.kind != new.kind {
                        self.delete_blobs(vec![blob]).await;
                        return Err(StoreError::Conflict(format!(
                            "app {:?} was just created as a {} app",
                            new.app, app.kind
                        )));
                    }
                }
                other => {
                    other?;
                }
            }
        }
        match self.versions.insert_one(&record).await {
            Ok(_) => Ok((record, true)),
            Err(e) if is_duplicate_key(&e) => {
                self.delete_blobs(vec![blob]).await;
                let found = self.versions.find_one(doc! { "_id": &id }).await?;
                Ok((
                    found.ok_or_else(|| anyhow::anyhow!("version {id} vanished"))?,
                    false,
                ))
            }
            Err(e) => {
                self.delete_blobs(vec![blob]).await;
                Err(e.into())
            }
        }
    }

    /// Makes `digest` the active version; the previous active one goes on the history.
    /// Activating the active version changes nothing.
    pub async fn activate(&self, tenant: &str, app: &str, digest: &str) -> StoreResult<AppRecord> {
        let current = self.app(tenant, app).await?;
        if current.active.as_deref() == Some(digest) {
            return Ok(current);
        }
        let mut update = doc! {
            "$set": { "active": digest, "updated_at": DateTime::now() },
            "$inc": { "revision": 1 },
        };
        if let Some(previous) = &current.active {
            update.insert(
                "$push",
                doc! { "history": { "$each": [previous], "$slice": -HISTORY_LIMIT } },
            );
        }
        self.update_app(&current, update).await
    }

    /// Re-activates the version active before the current one.
    pub async fn rollback(&self, tenant: &str, app: &str) -> StoreResult<AppRecord> {
        let current = self.app(tenant, app).await?;
        let Some(previous) = current.history.last() else {
            return Err(StoreError::Conflict(format!(
                "app {app:?} has no previous version to roll back to"
            )));
        };
        let update = doc! {
            "$set": { "active": previous, "updated_at": DateTime::now() },
            "$pop": { "history": 1 },
            "$inc": { "revision": 1 },
        };
        self.update_app(&current, update).await
    }

    /// Sets the app's own sandbox limits.
    pub async fn set_app_sandbox(
        &self,
        tenant: &str,
        app: &str,
        sandbox: &SandboxOverrides,
    ) -> StoreResult<AppRecord> {
        let current = self.app(tenant, app).await?;
        let sandbox = bson::to_bson(sandbox).map_err(anyhow::Error::from)?;
        let update = doc! {
            "$set": { "sandbox": sandbox, "updated_at": DateTime::now() },
            "$inc": { "revision": 1 },
        };
        self.update_app(&current, update).await
    }

    /// Applies `update` if nobody changed the app since `current` was read.
    async fn update_app(&self, current: &AppRecord, update: Document) -> StoreResult<AppRecord> {
        self.apps
            .find_one_and_update(
                doc! { "_id": &current.id, "revision": current.revision },
                update,
            )
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!(
                    "app {:?} changed concurrently; retry the request",
                    current.name
                ))
            })
    }

    /// Deletes a version that is neither active nor in the rollback history.
    pub async fn delete_version(&self, tenant: &str, app: &str, digest: &str) -> StoreResult<()> {
        let current = self.app(tenant, app).await?;
        if current.active.as_deref() == Some(digest) || current.history.iter().any(|d| d == digest)
        {
            return Err(StoreError::Conflict(format!(
                "version {digest} of app {app:?} is active or kept for rollback; activate another \
                 version first"
            )));
        }
        let id = version_id(tenant, app, digest);
        let Some(version) = self
            .versions
            .find_one_and_delete(doc! { "_id": &id })
            .await?
        else {
            return Err(StoreError::NotFound(format!(
                "app {app:?} has no version {digest}"
            )));
        };
        self.delete_blobs(vec![version.blob]).await;
        Ok(())
    }

    /// Deletes an app with all its versions.
    pub async fn delete_app(&self, tenant: &str, app: &str) -> StoreResult<()> {
        let blobs = self
            .component_blobs(doc! { "tenant": tenant, "app": app })
            .await?;
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let deleted = self
            .apps
            .delete_one(doc! { "_id": app_id(tenant, app) })
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the app"))?;
        if deleted.deleted_count == 0 {
            return Err(app_not_found(app));
        }
        self.versions
            .delete_many(doc! { "tenant": tenant, "app": app })
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the app"))?;
        session
            .commit_transaction()
            .await
            .map_err(|e| conflict_or(e, "the app"))?;
        self.delete_blobs(blobs).await;
        Ok(())
    }

    /// Reads a version's component back from GridFS.
    pub async fn component(&self, version: &VersionRecord) -> StoreResult<Vec<u8>> {
        let mut stream = self
            .components
            .open_download_stream(Bson::ObjectId(version.blob))
            .await?;
        let mut wasm = Vec::with_capacity(usize::try_from(version.size).unwrap_or(0));
        stream
            .read_to_end(&mut wasm)
            .await
            .map_err(|e| anyhow::anyhow!("reading component {}: {e}", version.id))?;
        Ok(wasm)
    }

    async fn write_blob(&self, name: &str, wasm: &[u8]) -> StoreResult<ObjectId> {
        let mut upload = self.components.open_upload_stream(name).await?;
        let written = async {
            upload.write_all(wasm).await?;
            upload.close().await
        }
        .await;
        if let Err(e) = written {
            let _ = upload.abort().await;
            return Err(anyhow::anyhow!("storing component {name}: {e}").into());
        }
        upload
            .id()
            .as_object_id()
            .ok_or_else(|| anyhow::anyhow!("GridFS gave {name} a non-ObjectId id").into())
    }

    pub(super) async fn component_blobs(&self, filter: Document) -> StoreResult<Vec<ObjectId>> {
        let versions: Vec<VersionRecord> = self.versions.find(filter).await?.try_collect().await?;
        Ok(versions.into_iter().map(|v| v.blob).collect())
    }

    /// Best effort: a blob left behind costs disk, never correctness (nothing points to it).
    pub(super) async fn delete_blobs(&self, blobs: Vec<ObjectId>) {
        for blob in blobs {
            if let Err(e) = self.components.delete(Bson::ObjectId(blob)).await {
                tracing::warn!(%blob, error = %e, "could not delete a component blob");
            }
        }
    }
}

fn app_id(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

fn version_id(tenant: &str, app: &str, digest: &str) -> String {
    format!("{tenant}/{app}@{digest}")
}

fn app_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("no app {name:?}"))
}
