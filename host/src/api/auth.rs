//! Who is calling: the operator, or a tenant, by the `Authorization: Bearer` token.
//! Missing or unknown token → 401; the wrong kind of token for the route → 403; a suspended
//! tenant → 403. A tenant never learns whether another tenant's things exist.

use super::{ApiError, AppState};
use crate::platform::{TenantRecord, TenantStatus};
use crate::tokens;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

/// The caller holds the operator's token.
pub struct Operator;

/// The caller is this (active) tenant.
pub struct Tenant(pub TenantRecord);

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("no token: send Authorization: Bearer <token>"))?;
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <token>`"))
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if tokens::matches(token, &state.config.server.operator_token) {
            return Ok(Operator);
        }
        if token.starts_with(tokens::TENANT_TOKEN_PREFIX)
            && state
                .platform
                .tenant_by_token(&tokens::hash(token))
                .await?
                .is_some()
        {
            return Err(ApiError::forbidden(
                "operator_only",
                "this endpoint needs the operator's token, not a tenant's",
            ));
        }
        Err(ApiError::unauthorized("the token is not valid"))
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        // The operator's token is recognised before any lookup: it never names a tenant (a
        // tenant's token is random), and the answer then needs no database.
        if tokens::matches(token, &state.config.server.operator_token) {
            return Err(ApiError::forbidden(
                "tenant_only",
                "this endpoint acts as a tenant: use the tenant's token (the operator \
                 manages tenants under /v1/admin)",
            ));
        }
        let Some(tenant) = state.platform.tenant_by_token(&tokens::hash(token)).await? else {
            return Err(ApiError::unauthorized("the token is not valid"));
        };
        tracing::Span::current().record("tenant", tenant.id.as_str());
        if tenant.status == TenantStatus::Suspended {
            let reason = tenant
                .suspended_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            return Err(ApiError::forbidden(
                "tenant_suspended",
                format!("tenant {:?} is suspended{reason}", tenant.id),
            ));
        }
        Ok(Tenant(tenant))
    }
}
