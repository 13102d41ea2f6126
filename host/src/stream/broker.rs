//! The broker side of streams, in RabbitMQ: one vhost and one user per tenant, and per stream
//! a quorum queue with a delivery limit whose dead letters go through the vhost's
//! dead-letter exchange to the stream's dead-letter queue. Provisioned through the
//! management API (every call idempotent); consumed over AMQP with the administrator's
//! credentials.
//!
//! A tenant's user may only publish to the publishing exchange of its own vhost
//! ([`INGEST_EXCHANGE`], where each stream's queue is bound by its own name) and read its own
//! dead-letter queues: it cannot publish through the default exchange or to the dead-letter
//! exchange (so it cannot put a message into a dead-letter queue), consume its live queues,
//! declare or bind anything, or enter another tenant's vhost. The platform publishes dead
//! letters and replays with the administrator's credentials, and marks what it writes with the
//! AMQP `user_id` property, which the broker refuses from anyone but that user: a dead letter's
//! `x-mysimbdp-*` headers count as the platform's verdict only under that mark.

use crate::config::{StreamConfig, redact_uri};
use anyhow::{Context, Result, anyhow};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties, DefaultConnectionBuilder};
use mysimbdp_client::client::error_chain;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

/// The exchange dead letters go through, in every tenant vhost.
pub const DEAD_LETTER_EXCHANGE: &str = "mysimbdp.dead";
/// The exchange tenants publish to, in every tenant vhost: a direct exchange where each
/// stream's queue is bound with its own name as routing key.
pub const INGEST_EXCHANGE: &str = "mysimbdp.ingest";
/// Suffix of a stream's dead-letter queue.
pub const DEAD_LETTER_SUFFIX: &str = ".dead";

/// Payload bytes a peeked dead letter shows.
const PEEK_TRUNCATE: u32 = 4096;

// A dead letter as shown to its tenant is an API answer: it lives in the API types crate.
pub use mysimbdp_api::DeadLetter;

/// Reads a message from the management API's "get". `platform_user` is the administrator:
/// only a message carrying its `user_id` (which the broker refuses from anyone else) has
/// `x-mysimbdp-*` headers the platform wrote; any other message reached the dead-letter
/// queue through the broker's own delivery limit, with its publisher's headers, which are
/// not shown as a verdict.
fn dead_letter_from_management(message: &serde_json::Value, platform_user: &str) -> DeadLetter {
    let properties = &message["properties"];
    let platform_written = properties["user_id"].as_str() == Some(platform_user);
    let none = serde_json::Value::Null;
    let headers = if platform_written {
        &properties["headers"]
    } else {
        &none
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let broker_limit = properties["headers"].get("x-death").is_some()
        && headers.get("x-mysimbdp-error-class").is_none();
    DeadLetter {
        message_id: text(&properties["message_id"]),
        class: text(&headers["x-mysimbdp-error-class"])
            .or_else(|| broker_limit.then(|| "delivery-limit".to_owned())),
        error: text(&headers["x-mysimbdp-error"]),
        deliveries: headers["x-mysimbdp-deliveries"].as_i64(),
        app_version: text(&headers["x-mysimbdp-app-version"]),
        dead_lettered_at: text(&headers["x-mysimbdp-dead-lettered-at"]),
        payload: text(&message["payload"]).unwrap_or_default(),
        base64: message["payload_encoding"] == "base64",
    }
}

/// How long a management API call or a broker request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a tenant publishes: returned by the API with the password.
#[derive(Debug, Clone)]
pub struct TenantEndpoint {
    /// `amqp://host:port/<vhost>`.
    pub url: String,
    /// The vhost.
    pub vhost: String,
}

/// The queue's state as the broker sees it now.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    /// Messages waiting.
    pub ready: u64,
    /// Messages delivered and not yet acknowledged.
    pub unacked: u64,
}

/// RabbitMQ as the platform's administrator sees it.
pub struct Broker {
    http: reqwest::Client,
    management: String,
    admin: AMQPUri,
    /// What an `amqps://` connection trusts besides the system's roots (`stream.ca_cert`).
    tls: OwnedTLSConfig,
    public_url: String,
    prefix: String,
    /// One administrator connection per vhost for queue-depth checks.
    probes: tokio::sync::Mutex<HashMap<String, Connection>>,
}

impl Broker {
    /// Reads the addresses and credentials of `config`; connects to nothing yet.
    pub fn new(config: &StreamConfig) -> Result<Self> {
        let admin: AMQPUri = config.amqp_url.parse().map_err(|e: String| {
            anyhow!(
                "stream.amqp_url {:?} is not an AMQP URL: {e}",
                redact_uri(&config.amqp_url)
            )
        })?;
        let mut http = reqwest::Client::builder().timeout(HTTP_TIMEOUT);
        let mut tls = OwnedTLSConfig::default();
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading stream.ca_cert {}", path.display()))?;
            // Neither client checks: a file without a certificate would trust nothing more
            // and fail later, far from its cause.
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("stream.ca_cert {} holds no PEM certificate", path.display());
            }
            let certificate =
                reqwest::Certificate::from_pem(pem.as_bytes()).with_context(|| {
                    format!("stream.ca_cert {} is not a PEM certificate", path.display())
                })?;
            http = http.add_root_certificate(certificate);
            tls.cert_chain = Some(pem);
        }
        let http = http.build().context("building the management API client")?;
        Ok(Self {
            http,
            management: config.management_url.trim_end_matches('/').to_owned(),
            admin,
            tls,
            public_url: config.public_amqp_url.trim_end_matches('/').to_owned(),
            prefix: config.vhost_prefix.clone(),
            probes: tokio::sync::Mutex::default(),
        })
    }

    /// The tenant's vhost (also its user's name).
    pub fn vhost(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.prefix)
    }

    /// Where the tenant publishes.
    pub fn endpoint(&self, tenant: &str) -> TenantEndpoint {
        let vhost = self.vhost(tenant);
        TenantEndpoint {
            url: format!("{}/{vhost}", self.public_url),
            vhost,
        }
    }

    /// Checks the management API answers and accepts the administrator.
    pub async fn check(&self) -> Result<()> {
        self.call(reqwest::Method::GET, "/api/overview", None)
            .await?;
        Ok(())
    }

    /// Creates (or repairs) the tenant's vhost, user, permissions, and its dead-letter and
    /// publishing exchanges.
    pub async fn provision_tenant(&self, tenant: &str, password: &str) -> Result<()> {
        let vhost = self.vhost(tenant);
        self.call(
            reqwest::Method::PUT,
            &format!("/api/vhosts/{vhost}"),
            Some(json!({ "description": format!("mysimbdp tenant {tenant}") })),
        )
        .await?;
        self.set_password(tenant, password).await?;
        self.secure_tenant(tenant).await
    }

    /// Applies the tenant's permissions and declares its vhost's exchanges (every call
    /// idempotent). Also repairs a vhost provisioned under older, looser permissions.
    pub async fn secure_tenant(&self, tenant: &str) -> Result<()> {
        let vhost = self.vhost(tenant);
        let admin = self.admin.authority.userinfo.username.clone();
        // The administrator's own permission first: it declares the exchanges.
        self.call(
            reqwest::Method::PUT,
            &format!("/api/permissions/{vhost}/{admin}"),
            Some(json!({ "configure": ".*", "write": ".*", "read": ".*" })),
        )
        .await?;
        for exchange in [DEAD_LETTER_EXCHANGE, INGEST_EXCHANGE] {
            self.call(
                reqwest::Method::PUT,
                &format!("/api/exchanges/{vhost}/{exchange}"),
                Some(json!({ "type": "direct", "durable": true })),
            )
            .await?;
        }
        self.call(
            reqwest::Method::PUT,
            &format!("/api/permissions/{vhost}/{vhost}"),
            Some(tenant_permissions()),
        )
        .await?;
        Ok(())
    }

    /// Sets the tenant user's password (creating the user).
    pub async fn set_password(&self, tenant: &str, password: &str) -> Result<()> {
        let user = self.vhost(tenant);
        self.call(
            reqwest::Method::PUT,
            &format!("/api/users/{user}"),
            Some(json!({ "password": password, "tags": "" })),
        )
        .await?;
        Ok(())
    }

    /// Creates (or checks) a stream's quorum queue and its dead-letter queue. Declaring an
    /// existing queue with other arguments fails, so a stream cannot silently change shape.
    pub async fn provision_stream(
        &self,
        tenant: &str,
        queue: &str,
        dead_letter_queue: &str,
        delivery_limit: u32,
    ) -> Result<()> {
        let vhost = self.vhost(tenant);
        self.call(
            reqwest::Method::PUT,
            &format!("/api/queues/{vhost}/{dead_letter_queue}"),
            Some(json!({ "durable": true, "arguments": { "x-queue-type": "quorum" } })),
        )
        .await?;
        self.call(
            reqwest::Method::POST,
            &format!("/api/bindings/{vhost}/e/{DEAD_LETTER_EXCHANGE}/q/{dead_letter_queue}"),
            Some(json!({ "routing_key": queue })),
        )
        .await?;
        self.call(
            reqwest::Method::PUT,
            &format!("/api/queues/{vhost}/{queue}"),
            Some(json!({
                "durable": true,
                "arguments": {
                    "x-queue-type": "quorum",
                    "x-delivery-limit": delivery_limit,
                    "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                    "x-dead-letter-routing-key": queue,
                },
            })),
        )
        .await?;
        self.bind_stream(tenant, queue).await
    }

    /// Binds the stream's queue to the publishing exchange by its own name (idempotent: the
    /// broker keeps one binding per key). Deleting the queue removes the binding with it.
    pub async fn bind_stream(&self, tenant: &str, queue: &str) -> Result<()> {
        let vhost = self.vhost(tenant);
        self.call(
            reqwest::Method::POST,
            &format!("/api/bindings/{vhost}/e/{INGEST_EXCHANGE}/q/{queue}"),
            Some(json!({ "routing_key": queue })),
        )
        .await?;
        Ok(())
    }

    /// The administrator's user name: the `user_id` the platform's own messages carry.
    pub fn platform_user(&self) -> &str {
        &self.admin.authority.userinfo.username
    }

    /// Deletes a stream's queues. Unless `force`, refuses while either holds messages.
    pub async fn delete_stream(
        &self,
        tenant: &str,
        queue: &str,
        dead_letter_queue: &str,
        force: bool,
    ) -> Result<(), DeleteRefused> {
        let vhost = self.vhost(tenant);
        if !force {
            for name in [queue, dead_letter_queue] {
                // Ready messages from a passive declare (exact now); unacknowledged ones
                // from the management API's statistics.
                let ready = self
                    .ready(tenant, name)
                    .await
                    .map_err(DeleteRefused::Broker)?;
                let depth = self
                    .management_depth(&vhost, name)
                    .await
                    .map_err(DeleteRefused::Broker)?;
                let held = ready.max(depth.ready) + depth.unacked;
                if held > 0 {
                    return Err(DeleteRefused::NotEmpty(format!(
                        "queue {name:?} still holds {held} messages; consume them, or delete \
                         with force to drop them"
                    )));
                }
            }
        }
        for name in [queue, dead_letter_queue] {
            match self
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/queues/{vhost}/{name}"),
                    None,
                )
                .await
            {
                Ok(_) | Err(ManagementError::NotFound) => {}
                Err(e) => return Err(DeleteRefused::Broker(e.into())),
            }
        }
        Ok(())
    }

    /// Removes the tenant's vhost (with every queue in it) and user.
    pub async fn delete_tenant(&self, tenant: &str) -> Result<()> {
        let vhost = self.vhost(tenant);
        for path in [
            format!("/api/vhosts/{vhost}"),
            format!("/api/users/{vhost}"),
        ] {
            match self.call(reqwest::Method::DELETE, &path, None).await {
                Ok(_) | Err(ManagementError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.probes.lock().await.remove(&vhost);
        Ok(())
    }

    /// The queue's depth from the management API (its statistics lag by a few seconds).
    async fn management_depth(&self, vhost: &str, queue: &str) -> Result<QueueDepth> {
        let body = match self
            .call(
                reqwest::Method::GET,
                &format!("/api/queues/{vhost}/{queue}"),
                None,
            )
            .await
        {
            Ok(body) => body,
            Err(ManagementError::NotFound) => return Ok(QueueDepth::default()),
            Err(e) => return Err(e.into()),
        };
        let count = |key: &str| body.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
        Ok(QueueDepth {
            ready: count("messages_ready"),
            unacked: count("messages_unacknowledged"),
        })
    }

    /// Messages waiting in a queue now (a passive declare over AMQP: no statistics lag).
    pub async fn ready(&self, tenant: &str, queue: &str) -> Result<u64> {
        let vhost = self.vhost(tenant);
        // One bound on the whole probe: a connection the broker is tearing down (a deleted
        // vhost) must not hold the probes' lock, and every caller behind it, forever.
        match tokio::time::timeout(HTTP_TIMEOUT, self.probe(tenant, &vhost, queue)).await {
            Ok(result) => result,
            Err(_) => {
                self.probes.lock().await.remove(&vhost);
                Err(anyhow!(
                    "the broker did not answer about queue {queue:?} in vhost {vhost:?} \
                     within {HTTP_TIMEOUT:?}"
                ))
            }
        }
    }

    async fn probe(&self, tenant: &str, vhost: &str, queue: &str) -> Result<u64> {
        let mut probes = self.probes.lock().await;
        let connection = match probes.get(vhost) {
            Some(connection) if connection.status().connected() => connection,
            _ => {
                let connection = self.connect(tenant).await?;
                probes.insert(vhost.to_owned(), connection);
                probes
                    .get(vhost)
                    .ok_or_else(|| anyhow!("probe connection vanished"))?
            }
        };
        // A passive declare of a missing queue closes its channel: one channel per probe.
        let channel = connection
            .create_channel()
            .await
            .with_context(|| format!("opening a channel in vhost {vhost:?}"))?;
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .with_context(|| format!("looking up queue {queue:?} in vhost {vhost:?}"));
        if declared.is_ok() {
            let _ = channel.close(200, "probe done".into()).await;
        }
        Ok(u64::from(declared?.message_count()))
    }

    /// Up to `count` dead letters, left in place (the management API's "get" with requeue:
    /// their order in the dead-letter queue may change).
    pub async fn peek(&self, tenant: &str, queue: &str, count: u32) -> Result<Vec<DeadLetter>> {
        let vhost = self.vhost(tenant);
        let body = self
            .call(
                reqwest::Method::POST,
                &format!("/api/queues/{vhost}/{queue}/get"),
                Some(json!({
                    "count": count,
                    "ackmode": "ack_requeue_true",
                    "encoding": "auto",
                    "truncate": PEEK_TRUNCATE,
                })),
            )
            .await?;
        let messages = body.as_array().cloned().unwrap_or_default();
        let platform_user = self.platform_user();
        Ok(messages
            .iter()
            .map(|message| dead_letter_from_management(message, platform_user))
            .collect())
    }

    /// Moves up to `limit` dead letters back to the stream's queue, without the headers
    /// dead-lettering added: each is published with confirms, then removed from the
    /// dead-letter queue. Returns how many moved. A crash between the two can leave a message
    /// in both; its documents' ids make the second one harmless.
    pub async fn replay(
        &self,
        tenant: &str,
        queue: &str,
        dead_letter_queue: &str,
        limit: u64,
    ) -> Result<u64> {
        use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
        let connection = self.connect(tenant).await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening a channel")?;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        let mut moved = 0;
        while moved < limit {
            let Some(message) = channel
                .basic_get(dead_letter_queue.into(), BasicGetOptions { no_ack: false })
                .await
                .with_context(|| format!("reading {dead_letter_queue:?}"))?
            else {
                break;
            };
            let delivery = message.delivery;
            let mut properties = delivery.properties.clone();
            if let Some(headers) = properties.headers().clone() {
                let mut kept = lapin::types::FieldTable::default();
                for (name, value) in headers.inner() {
                    let name = name.as_str();
                    if !name.starts_with("x-mysimbdp-")
                        && !name.starts_with("x-death")
                        && !name.starts_with("x-first-death")
                        && !name.starts_with("x-last-death")
                    {
                        kept.insert(name.into(), value.clone());
                    }
                }
                properties = properties.with_headers(kept);
            }
            // The replay is the platform's message now: the broker refuses any other
            // `user_id` from the administrator, and a later dead-lettering by the broker's
            // delivery limit must read as such (no tenant headers are left to trust).
            properties = properties.with_user_id(self.platform_user().into());
            let confirmation = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &delivery.data,
                    properties,
                )
                .await
                .context("publishing a replayed message")?
                .await
                .context("confirming a replayed message")?;
            if !confirmation.is_ack() || confirmation.take_message().is_some() {
                anyhow::bail!("the broker refused a replayed message (is {queue:?} gone?)");
            }
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .context("removing a replayed dead letter")?;
            moved += 1;
        }
        let _ = channel.close(200, "replayed".into()).await;
        let _ = connection.close(200, "replayed".into()).await;
        Ok(moved)
    }

    /// An AMQP connection into the tenant's vhost as the administrator.
    pub async fn connect(&self, tenant: &str) -> Result<Connection> {
        let mut uri = self.admin.clone();
        uri.vhost = self.vhost(tenant);
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(10);
        }
        let vhost = uri.vhost.clone();
        let host = format!("{}:{}", uri.authority.host, uri.authority.port);
        let builder = DefaultConnectionBuilder::new()
            .context("starting the broker client")?
            .with_uri(uri)
            .with_properties(ConnectionProperties::default())
            .with_tls_config(self.tls.clone());
        tokio::time::timeout(HTTP_TIMEOUT, builder.connect())
            .await
            .map_err(|_| anyhow!("connecting to the broker at {host} timed out"))?
            .with_context(|| format!("connecting to the broker at {host}, vhost {vhost:?}"))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ManagementError> {
        let url = format!("{}{path}", self.management);
        let userinfo = &self.admin.authority.userinfo;
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&userinfo.username, Some(&userinfo.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            ManagementError::Unreachable(format!("{}: {}", self.management, error_chain(&e)))
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(ManagementError::NotFound);
        }
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ManagementError::Refused(format!(
                "{method} {path}: {status}: {}",
                text.trim()
            )));
        }
        if text.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| ManagementError::Refused(format!("{method} {path}: bad JSON: {e}")))
    }
}

/// A failed management API call.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// No such object.
    #[error("not found")]
    NotFound,
    /// The API cannot be reached.
    #[error("RabbitMQ's management API is unreachable at {0}")]
    Unreachable(String),
    /// The API refused.
    #[error("RabbitMQ's management API refused {0}")]
    Refused(String),
}

/// Why a stream's queues were not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRefused {
    /// Messages would be lost.
    #[error("{0}")]
    NotEmpty(String),
    /// The broker failed.
    #[error(transparent)]
    Broker(anyhow::Error),
}

/// The tenant user's permissions in its vhost: write only to the publishing exchange (not the
/// default exchange, not the dead-letter exchange, so nothing it sends can land in a
/// dead-letter queue); read its dead-letter queues, but not the `mysimbdp.*` exchanges (read
/// on an exchange would let it bind that exchange's traffic into the publishing exchange);
/// configure nothing.
fn tenant_permissions() -> serde_json::Value {
    json!({
        "configure": "^$",
        "write": format!("^{}$", regex_escape(INGEST_EXCHANGE)),
        "read": format!("^(?!mysimbdp\\.)[^.]+{}$", regex_escape(DEAD_LETTER_SUFFIX)),
    })
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = !c.is_ascii_alphanumeric() && c != '_' && c != '-';
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
