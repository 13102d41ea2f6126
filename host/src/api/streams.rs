//! `/v1/streams/…`: a tenant's streams. Creating one provisions the broker side (the
//! tenant's vhost and user on first use, the stream's quorum queue with its delivery limit
//! and dead-letter queue, bound to the vhost's publishing exchange) and answers with where and
//! how to publish. Start, stop, delete, and the stream's statistics from its consumers'
//! reports.

use super::auth::Tenant;
use super::error::{Json, Path, Query};
use super::{ApiError, AppState, ErrorBody};
use crate::platform::{BrokerAccount, StreamRecord, StreamStatus};
use crate::stream::broker::{DeadLetter, INGEST_EXCHANGE};
use crate::stream::service::{self, StreamDetails, StreamError, StreamSpec};
use axum::extract::State;
use axum::http::StatusCode;
use mongodb::bson::DateTime;
use mysimbdp_api::{
    ConnectionView, CreateStream, CreatedStream, Replayed, StreamSeries, StreamStats, StreamView,
};
use serde::Deserialize;
use utoipa::IntoParams;

/// `?window_secs=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// The window the figures cover, in seconds (default 60, 1-86400; others are refused).
    #[param(minimum = 1, maximum = 86_400)]
    pub window_secs: Option<u64>,
}

/// `?window_secs=&points=` of a series.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// The window the series covers, in seconds (default 900, 60-86400; others are refused).
    #[param(minimum = 60, maximum = 86_400)]
    pub window_secs: Option<u64>,
    /// About how many points (default 120, 10-500; others are refused); a stream's steps are
    /// never narrower than its report interval, so it may get fewer.
    #[param(minimum = 10, maximum = 500)]
    pub points: Option<u64>,
}

impl SeriesQuery {
    /// The window and the number of points, checked.
    pub(super) fn checked(&self) -> Result<(u64, u64), ApiError> {
        Ok((
            in_range(
                "window_secs",
                self.window_secs.unwrap_or(900),
                60..=MAX_WINDOW_SECS,
            )?,
            in_range("points", self.points.unwrap_or(120), 10..=500)?,
        ))
    }
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

/// The one place a stream operation's error becomes an answer.
impl From<StreamError> for ApiError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::InvalidField {
                code,
                field,
                message,
            } => ApiError::invalid_field(code, field.to_owned(), message),
            StreamError::Conflict(message) => ApiError::conflict(message),
            StreamError::Store(e) => e.into(),
            StreamError::Broker(e) => broker_unavailable(e),
            StreamError::Host(e) => ApiError::internal(e),
        }
    }
}

fn view(stream: StreamDetails) -> StreamView {
    let StreamDetails {
        record,
        version,
        collection,
        running_consumers,
        throttled,
    } = stream;
    StreamView {
        collection,
        name: record.name,
        app: record.app,
        version,
        params: record.params,
        status: record.status,
        consumers: record.consumers,
        running_consumers,
        throttled,
        delivery_limit: record.delivery_limit,
        queue: record.queue,
        dead_letter_queue: record.dead_letter_queue,
        vhost: record.vhost,
        created_at: rfc3339(record.created_at),
    }
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
    let spec = StreamSpec {
        name: request.name,
        app: request.app,
        params: request.params,
        collection: request.collection,
        delivery_limit: request.delivery_limit,
    };
    let created = service::create(&state.streams, &tenant, spec).await?;
    let connection = connection_view(&state, &created.account, &created.stream.record);
    Ok((
        StatusCode::CREATED,
        Json(CreatedStream {
            stream: view(created.stream),
            connection,
        }),
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
    let streams = service::list(&state.streams, &tenant).await?;
    Ok(Json(streams.into_iter().map(view).collect()))
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
    let stream = service::show(&state.streams, &tenant, &name).await?;
    Ok(Json(view(stream)))
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
    let (stream, account) = service::connection(&state.streams, &tenant, &name).await?;
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
    let stream = service::set_status(&state.streams, &tenant, &name, StreamStatus::Running).await?;
    Ok(Json(view(stream)))
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
    let stream = service::set_status(&state.streams, &tenant, &name, StreamStatus::Stopped).await?;
    Ok(Json(view(stream)))
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
    service::delete(&state.streams, &tenant, &name, query.force).await?;
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
    let stats = service::stats(&state.streams, &tenant, &name, window_secs).await?;
    Ok(Json(stats))
}

/// A stream's figures over time, for plotting: messages per second, mean and p99 latency,
/// queue depth and consumers per step from its consumers' reports, with the monitor's
/// decisions and throttling changes of the window on the same time axis.
#[utoipa::path(get, path = "/v1/streams/{name}/series", tag = "streams",
    security(("tenant_token" = [])),
    params(("name" = String, Path, description = "Stream name"), SeriesQuery),
    responses((status = 200, body = StreamSeries), (status = 404, body = ErrorBody)))]
pub async fn series(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(name): Path<String>,
    Query(query): Query<SeriesQuery>,
) -> Result<Json<StreamSeries>, ApiError> {
    let (window_secs, points) = query.checked()?;
    let series = service::series(&state.streams, &tenant, &name, window_secs, points).await?;
    Ok(Json(series))
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
    let letters = service::peek_dead_letters(&state.streams, &tenant, &name, limit).await?;
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
    let replayed = service::replay_dead_letters(&state.streams, &tenant, &name, limit).await?;
    Ok(Json(Replayed { replayed }))
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
    let account = service::rotate_credentials(&state.streams, &tenant).await?;
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
