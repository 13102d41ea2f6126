//! `/v1/streams/…`: a tenant's streams. Creating one provisions the broker side (the
//! tenant's vhost and user on first use, the stream's quorum queue with its delivery limit
//! and dead-letter queue, bound to the vhost's publishing exchange) and answers with where and
//! how to publish. Start, stop, delete, and the stream's statistics from its consumers'
//! reports.

use super::auth::Tenant;
use super::data::check_collection;
use super::error::{Json, Path, Query};
use super::{ApiError, AppState, ErrorBody};
use crate::config::MAX_DELIVERY_LIMIT;
use crate::names;
use crate::platform::{
    BrokerAccount, NewStream, StoreError, StreamEvent, StreamRecord, StreamReport, StreamStatus,
    TenantRecord,
};
use crate::runtime::AppKind;
use crate::stream::broker::{DeadLetter, DeleteRefused, INGEST_EXCHANGE};
use crate::stream::dead_letter_queue;
use axum::extract::State;
use axum::http::StatusCode;
use mongodb::bson::DateTime;
use mysimbdp_api::{
    ConnectionView, CreateStream, CreatedStream, EventView, Replayed, StreamStats, StreamView,
};
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;

/// `?window_secs=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The window the figures cover, in seconds (default 60, 1-86400; others are refused).
    #[param(minimum = 1, maximum = 86_400)]
    pub window_secs: Option<u64>,
}

/// The longest stats window, in seconds (a day).
const MAX_WINDOW_SECS: u64 = 86_400;
/// The most dead letters one look returns (each carries up to 4 KiB of body).
const MAX_PEEK: u64 = 100;

/// `value` when it is within `range`, else a 400 naming the parameter and the range.
fn in_range(name: &str, value: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{name} = {value}: it must be {}..={}",
            range.start(),
            range.end()
        )))
    }
}

impl From<StreamEvent> for EventView {
    fn from(event: StreamEvent) -> Self {
        Self {
            at: rfc3339(event.at),
            kind: event.kind,
            from: event.from,
            to: event.to,
            reason: event.reason,
            host: event.host,
        }
    }
}

fn rfc3339(at: DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}

fn broker_unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "broker_unavailable",
        format!("{error:#}"),
    )
}

/// Live figures from the reports of the last interval: running consumers and throttling.
async fn live(state: &AppState, tenant: &TenantRecord, stream: &StreamRecord) -> (u32, bool) {
    let window = Duration::from_secs(tenant.profile.stream.report_interval_secs * 2);
    let reports = state
        .platform
        .recent_reports(&tenant.id, &stream.name, window)
        .await
        .unwrap_or_default();
    let latest = StreamReport::latest_per_host(&reports);
    (
        latest.iter().map(|r| r.consumers).sum(),
        latest.iter().any(|r| r.throttled),
    )
}

async fn view(state: &AppState, tenant: &TenantRecord, stream: StreamRecord) -> StreamView {
    let version = state
        .platform
        .app(&tenant.id, &stream.app)
        .await
        .ok()
        .and_then(|a| a.active);
    let (running_consumers, throttled) = live(state, tenant, &stream).await;
    StreamView {
        collection: stream
            .collection
            .clone()
            .unwrap_or_else(|| tenant.profile.sink.collection.clone()),
        name: stream.name,
        app: stream.app,
        version,
        params: stream.params,
        status: stream.status,
        consumers: stream.consumers,
        running_consumers,
        throttled,
        delivery_limit: stream.delivery_limit,
        queue: stream.queue,
        dead_letter_queue: stream.dead_letter_queue,
        vhost: stream.vhost,
        created_at: rfc3339(stream.created_at),
    }
}

/// The tenant's broker account: created (and its vhost provisioned) on first use.
async fn account(state: &AppState, tenant: &str) -> Result<BrokerAccount, ApiError> {
    let broker = &state.streams.broker;
    if let Some(account) = state.platform.broker_account(tenant).await? {
        return Ok(account);
    }
    let account = BrokerAccount {
        tenant: tenant.to_owned(),
        vhost: broker.vhost(tenant),
        user: broker.vhost(tenant),
        password: crate::tokens::broker_password().map_err(ApiError::internal)?,
        issued_at: DateTime::now(),
    };
    state.platform.save_broker_account(&account).await?;
    Ok(account)
}

fn connection_view(
    state: &AppState,
    account: &BrokerAccount,
    stream: &StreamRecord,
) -> ConnectionView {
    ConnectionView {
        url: state.streams.broker.endpoint(&account.tenant).url,
        vhost: account.vhost.clone(),
        user: account.user.clone(),
        password: account.password.clone(),
        exchange: INGEST_EXCHANGE.to_owned(),
        queue: stream.queue.clone(),
        dead_letter_queue: stream.dead_letter_queue.clone(),
    }
}

/// Create a stream: provisions the tenant's vhost and user (first stream only), the stream's
/// quorum queue with its delivery limit and its dead-letter queue, and starts it. The answer
/// says where to publish, with the tenant's broker credentials.
#[utoipa::path(post, path = "/v1/streams", tag = "streams",
    security(("tenant_token" = [])),
    request_body = CreateStream,
    responses(
        (status = 201, body = CreatedStream),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 409, description = "The name is taken, or the app is not a stream app with an active version", body = ErrorBody),
        (status = 503, description = "The broker is unavailable", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Json(request): Json<CreateStream>,
) -> Result<(StatusCode, Json<CreatedStream>), ApiError> {
    names::stream_name(&request.name)
        .map_err(|e| ApiError::invalid_field("invalid_name", "name".into(), e.to_string()))?;
    if let Some(collection) = &request.collection {
        check_collection(collection)?;
    }
    let delivery_limit = request
        .delivery_limit
        .unwrap_or(state.config.stream.delivery_limit);
    if !(1..=MAX_DELIVERY_LIMIT).contains(&delivery_limit) {
        return Err(ApiError::invalid_field(
            "invalid_value",
            "delivery_limit".into(),
            format!("delivery_limit = {delivery_limit}: it must be 1..={MAX_DELIVERY_LIMIT}"),
        ));
    }
    let app = state.platform.app(&tenant.id, &request.app).await?;
    if app.kind != AppKind::Stream {
        return Err(ApiError::conflict(format!(
            "app {:?} is a batch app; a stream needs a stream app",
            request.app
        )));
    }
    if app.active.is_none() {
        return Err(ApiError::conflict(format!(
            "app {:?} has no active version",
            request.app
        )));
    }
    match state.platform.stream(&tenant.id, &request.name).await {
        Ok(_) => {
            return Err(ApiError::conflict(format!(
                "a stream named {:?} exists already",
                request.name
            )));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let account = account(&state, &tenant.id).await?;
    let broker = &state.streams.broker;
    // Provisioning is idempotent: every creation also repairs the tenant's vhost.
    broker
        .provision_tenant(&tenant.id, &account.password)
        .await
        .map_err(broker_unavailable)?;
    let queue = request.name.clone();
    let dead_letters = dead_letter_queue(&queue);
    broker
        .provision_stream(&tenant.id, &queue, &dead_letters, delivery_limit)
        .await
        .map_err(broker_unavailable)?;
    let record = state
        .platform
        .create_stream(NewStream {
            tenant: &tenant.id,
            name: &request.name,
            app: &request.app,
            params: request.params,
            collection: request.collection,
            delivery_limit,
            consumers: tenant
                .profile
                .stream
                .min_consumers
                .max(1)
                .min(tenant.profile.stream.max_consumers),
            vhost: account.vhost.clone(),
            queue,
            dead_letter_queue: dead_letters,
        })
        .await?;
    tracing::info!(tenant = %tenant.id, stream = %record.name, "stream created");
    let connection = connection_view(&state, &account, &record);
    let stream = view(&state, &tenant, record).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedStream { stream, connection }),
    ))
}

/// The calling tenant's streams.
#[utoipa::path(get, path = "/v1/streams", tag = "streams",
    security(("tenant_token" = [])),
    responses((status = 200, body = Vec<StreamView>)))]
pub async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<StreamView>>, ApiError> {
    let mut views = Vec::new();
    for stream in state.platform.list_streams(&tenant.id).await? {
        views.push(view(&state, &tenant, stream).await);
    }
    Ok(Json(views))
}

/// One stream.
#[utoipa::path(get, path = "/v1/streams/{name}", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = StreamView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    let stream = state.platform.stream(&tenant.id, &name).await?;
    Ok(Json(view(&state, &tenant, stream).await))
}

/// Where and how to publish to a stream, with the tenant's broker credentials.
#[utoipa::path(get, path = "/v1/streams/{name}/connection", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn connection(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let stream = state.platform.stream(&tenant.id, &name).await?;
    let account = account(&state, &tenant.id).await?;
    Ok(Json(connection_view(&state, &account, &stream)))
}

/// Start a stopped stream: consumers come back on the next reconciliation.
#[utoipa::path(post, path = "/v1/streams/{name}/start", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = StreamView), (status = 404, body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    let stream = state
        .platform
        .set_stream_status(&tenant.id, &name, StreamStatus::Running)
        .await?;
    Ok(Json(view(&state, &tenant, stream).await))
}

/// Stop a stream: its consumers finish their batch and go; messages wait in the queue.
#[utoipa::path(post, path = "/v1/streams/{name}/stop", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name")),
    responses((status = 200, body = StreamView), (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    let stream = state
        .platform
        .set_stream_status(&tenant.id, &name, StreamStatus::Stopped)
        .await?;
    Ok(Json(view(&state, &tenant, stream).await))
}

/// `?force=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete even when the queues hold messages (they are lost).
    #[serde(default)]
    pub force: bool,
}

/// Delete a stream and its queues. Refused (409) while its queue or dead-letter queue holds
/// messages, unless `force=true`.
#[utoipa::path(delete, path = "/v1/streams/{name}", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name"), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let stream = state.platform.stream(&tenant.id, &name).await?;
    state
        .streams
        .broker
        .delete_stream(
            &tenant.id,
            &stream.queue,
            &stream.dead_letter_queue,
            query.force,
        )
        .await
        .map_err(|e| match e {
            DeleteRefused::NotEmpty(message) => ApiError::conflict(message),
            DeleteRefused::Broker(e) => broker_unavailable(e),
        })?;
    state.platform.delete_stream(&tenant.id, &name).await?;
    tracing::info!(tenant = %tenant.id, stream = %name, "stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A stream's figures over a window: messages, bytes, throughput, latency, errors, queue
/// depth and consumers, from its consumers' periodic reports, with the monitor's decisions.
#[utoipa::path(get, path = "/v1/streams/{name}/stats", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name"), StatsQuery),
    responses((status = 200, body = StreamStats), (status = 404, body = ErrorBody)))]
pub async fn stats(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StreamStats>, ApiError> {
    let window_secs = in_range(
        "window_secs",
        query.window_secs.unwrap_or(60),
        1..=MAX_WINDOW_SECS,
    )?;
    let stream = state.platform.stream(&tenant.id, &name).await?;
    let reports = state
        .platform
        .recent_reports(&tenant.id, &name, Duration::from_secs(window_secs))
        .await?;
    let sum = |f: fn(&StreamReport) -> u64| reports.iter().map(f).sum::<u64>();
    let messages = sum(|r| r.messages);
    let weighted: f64 = reports
        .iter()
        .map(|r| r.latency_avg_ms * r.messages as f64)
        .sum();
    let (running_consumers, throttled) = live(&state, &tenant, &stream).await;
    let events = state
        .platform
        .stream_events(&tenant.id, &name, 20)
        .await?
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(Json(StreamStats {
        stream: name,
        window_secs,
        reports: reports.len(),
        messages,
        bytes: sum(|r| r.bytes),
        documents: sum(|r| r.documents),
        messages_per_sec: messages as f64 / covered_secs(&reports, window_secs),
        dead_lettered: sum(|r| r.dead_lettered),
        retried: sum(|r| r.retried),
        errors: sum(|r| r.errors),
        latency_avg_ms: if messages == 0 {
            0.0
        } else {
            weighted / messages as f64
        },
        latency_p99_ms: reports.iter().map(|r| r.latency_p99_ms).fold(0.0, f64::max),
        queue_depth: reports.last().map(|r| r.queue_depth).unwrap_or(0),
        running_consumers,
        desired_consumers: stream.consumers,
        throttled,
        events,
    }))
}

/// `?limit=` of a look at dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeekQuery {
    /// How many at most (default 10, 1-100; others are refused).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// `?limit=` of a replay.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// How many at most (default: all of them; 0 is refused).
    #[param(minimum = 1)]
    pub limit: Option<u64>,
}

/// A look at a stream's dead letters (left in place): id, failure class, reason, deliveries,
/// the app version that failed them and the body (4 KiB at most).
#[utoipa::path(get, path = "/v1/streams/{name}/dead-letters", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name"), PeekQuery),
    responses((status = 200, body = Vec<DeadLetter>), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Query(query): Query<PeekQuery>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    // At most 100, so the cast is lossless.
    let limit = in_range("limit", query.limit.unwrap_or(10), 1..=MAX_PEEK)? as u32;
    let stream = state.platform.stream(&tenant.id, &name).await?;
    let letters = state
        .streams
        .broker
        .peek(&tenant.id, &stream.dead_letter_queue, limit)
        .await
        .map_err(broker_unavailable)?;
    Ok(Json(letters))
}

/// Send a stream's dead letters back through it (say, after activating a fixed app version):
/// each is republished to the stream's queue, without the dead-lettering headers and with a
/// fresh delivery count, then removed from the dead-letter queue.
#[utoipa::path(post, path = "/v1/streams/{name}/dead-letters/replay", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name"), ReplayQuery),
    responses((status = 200, body = Replayed), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn replay(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> Result<Json<Replayed>, ApiError> {
    let limit = in_range("limit", query.limit.unwrap_or(u64::MAX), 1..=u64::MAX)?;
    let stream = state.platform.stream(&tenant.id, &name).await?;
    let replayed = state
        .streams
        .broker
        .replay(&tenant.id, &stream.queue, &stream.dead_letter_queue, limit)
        .await
        .map_err(broker_unavailable)?;
    tracing::info!(tenant = %tenant.id, stream = %name, replayed, "dead letters replayed");
    Ok(Json(Replayed { replayed }))
}

/// The seconds the reports cover: from the start of the first one's interval to the end of
/// the last one, at most the window.
fn covered_secs(reports: &[StreamReport], window_secs: u64) -> f64 {
    let window_ms = window_secs as i64 * 1000;
    let covered_ms = match (reports.first(), reports.last()) {
        (Some(first), Some(last)) => {
            let start = first.at.map(|at| at.timestamp_millis()).unwrap_or_default()
                - first.interval_ms as i64;
            let end = last.at.map(|at| at.timestamp_millis()).unwrap_or_default();
            (end - start).clamp(1, window_ms)
        }
        _ => window_ms,
    };
    covered_ms as f64 / 1000.0
}

/// Issue a new broker password for the tenant (every stream's publishers need it; the old
/// one stops working at once for new connections).
#[utoipa::path(post, path = "/v1/streams/credentials/rotate", tag = "streams",
    security(("tenant_token" = [])),
    responses((status = 200, body = ConnectionView, description = "The new credentials (queue fields empty)"), (status = 503, body = ErrorBody)))]
pub async fn rotate_credentials(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<ConnectionView>, ApiError> {
    let mut account = account(&state, &tenant.id).await?;
    account.password = crate::tokens::broker_password().map_err(ApiError::internal)?;
    account.issued_at = DateTime::now();
    state
        .streams
        .broker
        .set_password(&tenant.id, &account.password)
        .await
        .map_err(broker_unavailable)?;
    state.platform.save_broker_account(&account).await?;
    Ok(Json(ConnectionView {
        url: state.streams.broker.endpoint(&tenant.id).url,
        vhost: account.vhost,
        user: account.user,
        password: account.password,
        exchange: INGEST_EXCHANGE.to_owned(),
        queue: String::new(),
        dead_letter_queue: String::new(),
    }))
}
