//! Tenants and their versioned profiles in the platform database.

use super::{Platform, StoreError, StoreResult, conflict_or, is_duplicate_key};
use crate::profile::Profile;
use futures_util::TryStreamExt;
use mongodb::bson::{self, DateTime, doc};
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};

// The status is part of the API (tenant views): it lives in the API types crate.
pub use mysimbdp_api::TenantStatus;

/// A tenant as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The tenant id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// Why it was suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_reason: Option<String>,
    /// SHA-256 of the tenant's API token; the token itself is never stored.
    pub token_hash: String,
    /// When the current token was issued.
    pub token_issued_at: DateTime,
    /// The current profile's version (1, 2, …).
    pub profile_version: i64,
    /// The current profile.
    pub profile: Profile,
    /// When the tenant was created.
    pub created_at: DateTime,
    /// When it last changed.
    pub updated_at: DateTime,
}

/// One version of a tenant's profile, kept for audit and comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileVersion {
    /// `<tenant>:<version>`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// 1, 2, …
    pub version: i64,
    /// The profile as it was.
    pub profile: Profile,
    /// When it was set.
    pub created_at: DateTime,
}

impl Platform {
    /// Creates a tenant with its first profile; `Conflict` if the id is taken.
    pub async fn create_tenant(
        &self,
        id: &str,
        profile: Profile,
        token_hash: String,
    ) -> StoreResult<TenantRecord> {
        let now = DateTime::now();
        let tenant = TenantRecord {
            id: id.to_owned(),
            status: TenantStatus::Active,
            suspended_reason: None,
            token_hash,
            token_issued_at: now,
            profile_version: 1,
            profile: profile.clone(),
            created_at: now,
            updated_at: now,
        };
        let first = ProfileVersion {
            id: format!("{id}:1"),
            tenant: id.to_owned(),
            version: 1,
            profile,
            created_at: now,
        };
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let inserted = self.tenants.insert_one(&tenant).session(&mut session).await;
        match inserted {
            Err(e) if is_duplicate_key(&e) => {
                return Err(StoreError::Conflict(format!(
                    "tenant {id:?} already exists"
                )));
            }
            other => other.map_err(|e| conflict_or(e, "the tenant"))?,
        };
        self.profiles
            .insert_one(&first)
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        session
            .commit_transaction()
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        Ok(tenant)
    }

    /// All tenants, by id.
    pub async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        Ok(self
            .tenants
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?)
    }

    /// One tenant.
    pub async fn tenant(&self, id: &str) -> StoreResult<TenantRecord> {
        self.tenants
            .find_one(doc! { "_id": id })
            .await?
            .ok_or_else(|| tenant_not_found(id))
    }

    /// The tenant holding this token hash, if any.
    pub async fn tenant_by_token(&self, token_hash: &str) -> StoreResult<Option<TenantRecord>> {
        Ok(self
            .tenants
            .find_one(doc! { "token_hash": token_hash })
            .await?)
    }

    /// Suspends or resumes a tenant.
    pub async fn set_tenant_status(
        &self,
        id: &str,
        status: TenantStatus,
        reason: Option<String>,
    ) -> StoreResult<TenantRecord> {
        let status_bson = bson::to_bson(&status).map_err(anyhow::Error::from)?;
        let update = match reason {
            Some(reason) if status == TenantStatus::Suspended => doc! {
                "$set": { "status": status_bson, "suspended_reason": reason, "updated_at": DateTime::now() },
            },
            _ => doc! {
                "$set": { "status": status_bson, "updated_at": DateTime::now() },
                "$unset": { "suspended_reason": "" },
            },
        };
        self.tenants
            .find_one_and_update(doc! { "_id": id }, update)
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| tenant_not_found(id))
    }

    /// Replaces the tenant's token hash: the old token stops working at once.
    pub async fn replace_token(&self, id: &str, token_hash: String) -> StoreResult<TenantRecord> {
        let now = DateTime::now();
        self.tenants
            .find_one_and_update(
                doc! { "_id": id },
                doc! { "$set": { "token_hash": token_hash, "token_issued_at": now, "updated_at": now } },
            )
            .return_document(ReturnDocument::After)
            .await?
            .ok_or_else(|| tenant_not_found(id))
    }

    /// Stores a new profile version and makes it current, atomically.
    pub async fn set_profile(&self, id: &str, profile: Profile) -> StoreResult<TenantRecord> {
        let now = DateTime::now();
        let profile_bson = bson::to_bson(&profile).map_err(anyhow::Error::from)?;
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let updated = self
            .tenants
            .find_one_and_update(
                doc! { "_id": id },
                doc! {
                    "$set": { "profile": profile_bson, "updated_at": now },
                    "$inc": { "profile_version": 1 },
                },
            )
            .return_document(ReturnDocument::After)
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the profile"))?
            .ok_or_else(|| tenant_not_found(id))?;
        let version = ProfileVersion {
            id: format!("{id}:{}", updated.profile_version),
            tenant: id.to_owned(),
            version: updated.profile_version,
            profile,
            created_at: now,
        };
        self.profiles
            .insert_one(&version)
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the profile"))?;
        session
            .commit_transaction()
            .await
            .map_err(|e| conflict_or(e, "the profile"))?;
        Ok(updated)
    }

    /// Every profile version of a tenant, newest first.
    pub async fn profile_versions(&self, id: &str) -> StoreResult<Vec<ProfileVersion>> {
        self.tenant(id).await?;
        Ok(self
            .profiles
            .find(doc! { "tenant": id })
            .sort(doc! { "version": -1 })
            .await?
            .try_collect()
            .await?)
    }

    /// Deletes a tenant with its profiles, apps and components. The tenant's own database
    /// (its documents) is left to the operator.
    pub async fn delete_tenant(&self, id: &str) -> StoreResult<()> {
        let blobs = self.component_blobs(doc! { "tenant": id }).await?;
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        let deleted = self
            .tenants
            .delete_one(doc! { "_id": id })
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        if deleted.deleted_count == 0 {
            return Err(tenant_not_found(id));
        }
        self.profiles
            .delete_many(doc! { "tenant": id })
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        self.apps
            .delete_many(doc! { "tenant": id })
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        self.versions
            .delete_many(doc! { "tenant": id })
            .session(&mut session)
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        session
            .commit_transaction()
            .await
            .map_err(|e| conflict_or(e, "the tenant"))?;
        self.delete_blobs(blobs).await;
        Ok(())
    }
}

fn tenant_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("no tenant {id:?}"))
}
