//! Where the services started by `scripts/services up` listen, and connections to them.

/// Redis, as the services script starts it.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// RabbitMQ with the default guest account.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// RabbitMQ's TLS listener, as tenants are told to reach it (CA: [`services_ca`]).
pub const PUBLIC_AMQPS_URL: &str = "amqps://127.0.0.1:5671";
/// The same TLS listener with the administrator's credentials, as the platform reaches it.
pub const AMQPS_URL: &str = "amqps://guest:guest@127.0.0.1:5671/%2f";
/// RabbitMQ's management API over HTTPS (the services script's CA).
pub const RABBITMQ_MANAGEMENT_HTTPS_URL: &str = "https://127.0.0.1:15671";
/// MongoDB as the single-node replica set `rs0`.
pub const MONGODB_URI: &str =
    "mongodb://127.0.0.1:27017/?replicaSet=rs0&serverSelectionTimeoutMS=10000";
/// The second MongoDB server (replica set `rs1`): a tenant's dedicated coredms in tests.
pub const MONGODB2_URI: &str =
    "mongodb://127.0.0.1:27018/?replicaSet=rs1&serverSelectionTimeoutMS=10000";
/// The third MongoDB server (replica set `rs2`), which accepts TLS connections only; add
/// `&tlsCAFile=` with [`services_ca`] to reach it.
pub const MONGODB_TLS_URI: &str =
    "mongodb://127.0.0.1:27019/?replicaSet=rs2&tls=true&serverSelectionTimeoutMS=10000";

/// The second Redis, which accepts TLS connections only (CA: [`services_ca`]).
pub const REDIS_TLS_URL: &str = "rediss://127.0.0.1:6380/";

/// The second etcd, whose clients speak TLS only (CA: [`services_ca`]).
pub const ETCD_TLS_ENDPOINT: &str = "127.0.0.1:2381";

/// The CA the services script made for its TLS servers (PEM).
pub fn services_ca() -> std::path::PathBuf {
    let state = std::env::var_os("MYSIMBDP_SERVICES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".local/share/mysimbdp-services")
        });
    let ca = state.join("tls/ca.pem");
    assert!(
        ca.is_file(),
        "no {} : run scripts/services up (it makes the CA of its TLS servers)",
        ca.display()
    );
    ca
}

/// etcd's client endpoint.
pub const ETCD_ENDPOINT: &str = "127.0.0.1:2379";

/// The shared MongoDB.
pub async fn mongo() -> mongodb::Client {
    mongodb::Client::with_uri_str(MONGODB_URI).await.unwrap()
}

/// A collection of a tenant's own database on the shared coredms.
pub async fn tenant_collection(
    tenant: &str,
    collection: &str,
) -> mongodb::Collection<mongodb::bson::Document> {
    mongo()
        .await
        .database(&crate::naming::tenant_database(tenant))
        .collection(collection)
}

/// A client of etcd.
pub async fn etcd() -> etcd_client::Client {
    etcd_client::Client::connect([ETCD_ENDPOINT], None)
        .await
        .unwrap()
}

/// RabbitMQ's management API, with the default guest account.
pub const RABBITMQ_MANAGEMENT_URL: &str = "http://127.0.0.1:15672/api";

/// A request to RabbitMQ's management API (`path` after `/api/`), as the guest account.
pub fn rabbitmq_management(method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, format!("{RABBITMQ_MANAGEMENT_URL}/{path}"))
        .basic_auth("guest", Some("guest"))
}

/// How many consumers a queue of `vhost` has now, as the queue itself counts them (a passive
/// declare as the guest account, which provisions tenant vhosts; the management API's
/// figures can lag by seconds).
pub async fn queue_consumers(vhost: &str, queue: &str) -> u32 {
    let url = format!(
        "amqp://guest:guest@127.0.0.1:5672/{}",
        vhost.replace('%', "%25").replace('/', "%2f")
    );
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ vhost {vhost:?}: {e}"));
    let channel = connection.create_channel().await.unwrap();
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
        .unwrap_or_else(|e| panic!("queue {queue:?} of vhost {vhost:?}: {e}"));
    let _ = connection.close(200, "done".into()).await;
    declared.consumer_count()
}
