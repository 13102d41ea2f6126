//! Streams as tests drive them: a tenant with a stream, publishing to it with confirms as the
//! tenant, and forcing the platform's broker connections closed.

use crate::files::read;
use crate::host::Host;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Creates a tenant (with a profile), uploads `wasm` as `app` and creates stream `stream`;
/// returns the token and the stream's connection details.
pub async fn stream_of(
    host: &Host,
    tenant: &str,
    profile: Value,
    app: &str,
    wasm: &str,
    stream: Value,
) -> (String, Value) {
    let token = host.create_tenant(tenant, Some(profile)).await;
    let (status, body) = host.upload(&token, app, read(wasm)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, created) = host
        .tenant(&token, Method::POST, "/v1/streams", Some(stream))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (token, created["connection"].clone())
}

/// The AMQP URI of a stream's `connection`, as its tenant (in `vhost` if given).
pub fn uri(connection: &Value, vhost: Option<&str>) -> AMQPUri {
    let mut uri: AMQPUri = connection["url"].as_str().unwrap().parse().unwrap();
    uri.authority.userinfo.username = connection["user"].as_str().unwrap().to_owned();
    uri.authority.userinfo.password = connection["password"].as_str().unwrap().to_owned();
    if let Some(vhost) = vhost {
        uri.vhost = vhost.to_owned();
    }
    uri
}

/// A connection to the broker as the stream's tenant.
pub async fn connect(connection: &Value) -> Connection {
    Connection::connect_uri(uri(connection, None), ConnectionProperties::default())
        .await
        .unwrap()
}

/// Publishes `(message id, body)` pairs with confirms to the tenant's publishing exchange;
/// returns how many the broker routed.
pub async fn publish_to(
    connection: &Value,
    queue: &str,
    messages: impl IntoIterator<Item = (String, String)>,
) -> usize {
    let amqp = connect(connection).await;
    let channel = amqp.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = connection["exchange"].as_str().unwrap();
    assert_eq!(exchange, "mysimbdp.ingest", "{connection}");
    let mut confirms = Vec::new();
    for (id, body) in messages {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(id.into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    let mut routed = 0;
    for confirm in confirms {
        let confirmation = confirm.await.unwrap();
        if confirmation.is_ack() && confirmation.take_message().is_none() {
            routed += 1;
        }
    }
    let _ = amqp.close(200, "done".into()).await;
    routed
}

/// Publishes to the stream's own queue and checks the broker routed every message.
pub async fn publish(connection: &Value, messages: impl IntoIterator<Item = (String, String)>) {
    let queue = connection["queue"].as_str().unwrap().to_owned();
    let messages: Vec<_> = messages.into_iter().collect();
    let count = messages.len();
    assert_eq!(publish_to(connection, &queue, messages).await, count);
}

/// Messages `m<from>`, … with bodies `{"n": <from>}`, …, `count` of them.
pub fn numbered_from(from: u64, count: u64) -> Vec<(String, String)> {
    (from..from + count)
        .map(|n| (format!("m{n}"), json!({ "n": n }).to_string()))
        .collect()
}

/// Force-closes every broker connection in `vhost` opened by `user` (through the management
/// API, as an operator or a failing network would); returns how many were closed.
pub async fn force_close_connections(vhost: &str, user: &str) -> usize {
    let listed: Value = crate::services::rabbitmq_management(reqwest::Method::GET, "connections")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut closed = 0;
    for connection in listed.as_array().into_iter().flatten() {
        if connection["vhost"] != vhost || connection["user"] != user {
            continue;
        }
        let name = connection["name"].as_str().unwrap();
        let mut url = reqwest::Url::parse(crate::services::RABBITMQ_MANAGEMENT_URL).unwrap();
        url.path_segments_mut()
            .unwrap()
            .push("connections")
            .push(name);
        let response = reqwest::Client::new()
            .delete(url)
            .basic_auth("guest", Some("guest"))
            .header("X-Reason", "forced close (fault test)")
            .send()
            .await
            .unwrap();
        if response.status().is_success() {
            closed += 1;
        }
    }
    closed
}

/// Waits until the consumers of a stream run the sensor app (version 2) instead of the
/// poison app: probe readings, one at a time, until one comes out as the sensor app's metric
/// document; the probes' documents are then removed. Both apps accept a probe, so none is
/// dead-lettered.
pub async fn wait_for_the_sensor_app(tenant: &str, conn: &Value) {
    let metrics = crate::services::tenant_collection(tenant, "metrics").await;
    // The poison app stores a probe as `{n, message, attempt}`, the sensor app as metrics
    // of device "probe".
    let probe_documents = |id: &str| {
        mongodb::bson::doc! { "$or": [ { "message": id }, { "device": "probe", "site": id } ] }
    };
    let mut probes = 0u32;
    let mut pending: Option<String> = None;
    crate::poll::wait_until(
        "the stream runs the new version",
        std::time::Duration::from_secs(30),
        async || {
            if let Some(id) = &pending {
                let seen = metrics.find_one(probe_documents(id)).await.unwrap();
                match seen {
                    Some(document) => {
                        pending = None;
                        return Some(document.contains_key("metric"));
                    }
                    None => return None,
                }
            }
            probes += 1;
            let id = format!("probe-{probes}");
            let body = json!({
                "device": "probe", "site": id, "ts": "2026-11-21T10:00:00Z",
                "readings": { "temp": 1 }
            });
            publish(conn, [(id.clone(), body.to_string())]).await;
            pending = Some(id);
            None
        },
        |by_the_sensor_app| *by_the_sensor_app == Some(true),
    )
    .await;
    metrics
        .delete_many(mongodb::bson::doc! { "$or": [
            { "message": { "$regex": "^probe-" } },
            { "device": "probe" }
        ] })
        .await
        .unwrap();
}

/// A stream's steady load: a chunk of numbered messages ([`numbered_from`]) published every
/// `pace` until stopped, counting what the broker confirmed.
pub struct Flow {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    published: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Flow {
    /// Starts publishing to the stream of `connection`.
    pub fn start(connection: &Value, chunk: u64, pace: std::time::Duration) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = {
            let (stop, published, connection) =
                (stop.clone(), published.clone(), connection.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let from = published.load(Ordering::Relaxed);
                    publish(&connection, numbered_from(from, chunk)).await;
                    published.fetch_add(chunk, Ordering::Relaxed);
                    // Not a gate: the publishing pace.
                    tokio::time::sleep(pace).await;
                }
            })
        };
        Self {
            stop,
            published,
            task,
        }
    }

    /// Messages confirmed so far.
    pub fn published(&self) -> u64 {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops after the chunk in flight; the messages confirmed in all.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap();
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Waits until `documents` holds one document per message of a [`Flow`] that published
/// `total`, then checks none is missing or twice there (each message's `n`).
pub async fn assert_each_numbered_once(
    documents: &mongodb::Collection<mongodb::bson::Document>,
    total: u64,
) {
    use mongodb::bson::doc;
    crate::poll::wait_until(
        &format!("the stream's {total} documents landed"),
        std::time::Duration::from_secs(240),
        async || documents.count_documents(doc! {}).await.unwrap(),
        |n| *n >= total,
    )
    .await;
    assert_eq!(
        documents.count_documents(doc! {}).await.unwrap(),
        total,
        "duplicated stream documents"
    );
    let distinct = documents.distinct("n", doc! {}).await.unwrap().len() as u64;
    assert_eq!(distinct, total, "lost stream documents");
}
