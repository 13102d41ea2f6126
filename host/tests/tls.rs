//! TLS on the platform's hops. The API over HTTPS (`[server.tls]`): a client that trusts the
//! CA works, plain HTTP to the same port gets no HTTP answer, a client that does not trust the
//! CA refuses the host, and the CLI verifies it too — refusing without the CA (and saying how
//! to give it), working with `--ca-cert` or `MYSIMBDP_CA_CERT`. MongoDB over TLS: a host whose
//! platform database and coredms are the services script's TLS-only server, reached with the
//! URI's `tls=true&tlsCAFile=`, works end to end; without the CA, or without TLS, nothing
//! connects. Redis over TLS (`rediss://` and `redis.ca_cert`): a host's batch jobs go through
//! the services script's TLS-only Redis; without the CA, or without TLS, nothing connects. etcd
//! over TLS (`registry.ca_cert`): a host registers in the script's TLS-only etcd and lists
//! itself; without the CA it does not start. Tenants' AMQP over TLS: a host whose
//! `stream.public_amqp_url` is the script's `amqps://` listener hands that address out with a
//! new stream; `stream publish --ca-cert` with the script's CA publishes over it and the
//! messages are ingested; without the CA, or with another, the CLI refuses the broker, naming
//! its certificate, and publishes nothing. The host itself reaches the broker over `amqps://`
//! and its management API over HTTPS with `stream.ca_cert`, and does not start without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_tests::cli::{async_command, text};
use mysimbdp_tests::prelude::*;
use mysimbdp_tests::services::{
    AMQPS_URL, ETCD_TLS_ENDPOINT, MONGODB_TLS_URI, PUBLIC_AMQPS_URL, RABBITMQ_MANAGEMENT_HTTPS_URL,
    REDIS_TLS_URL, services_ca,
};
use mysimbdp_tests::tls::pki;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An error and its sources, as one line.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

async fn cli(
    base: &str,
    extra: &[&str],
    ca_env: Option<&std::path::Path>,
) -> (Option<i32>, String, String) {
    let mut command = async_command();
    command
        .args(["tenant", "list", "--api", base])
        .args(extra)
        .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
        .env_remove("MYSIMBDP_CA_CERT");
    if let Some(ca) = ca_env {
        command.env("MYSIMBDP_CA_CERT", ca);
    }
    text(&command.output().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_only_and_every_client_verifies_it() {
    let database = database_name();
    let pki = pki(&unique("api"));
    let host = Host::start_tls(&database, "tls-cache", &pki).await;
    let port = host.base.rsplit(':').next().unwrap().to_owned();

    // A client trusting the CA: the whole API.
    let tenant = unique("tls");
    let token = host.create_tenant(&tenant, None).await;
    let (status, me) = host.tenant(&token, Method::GET, "/v1/tenant", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], tenant.as_str());

    // Plain HTTP to the same port: the bytes are a failed handshake, never an HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let refused = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(refused.is_err(), "{refused:?}");

    // A client that connects and never starts its handshake holds its slot no longer than
    // the header timeout (1.5 s here).
    let silent = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    within(
        "the silent connection is closed",
        std::time::Duration::from_secs(10),
        async {
            let mut silent = silent;
            let mut rest = Vec::new();
            let _ = silent.read_to_end(&mut rest).await;
        },
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(1400));

    // A client trusting another CA (or only the system's roots) refuses the host.
    let other = reqwest::Certificate::from_pem(&std::fs::read(&pki.other_ca).unwrap()).unwrap();
    let stranger = reqwest::Client::builder()
        .tls_certs_only([other])
        .build()
        .unwrap();
    let error = stranger
        .get(format!("{}/healthz", host.base))
        .send()
        .await
        .unwrap_err();
    assert!(chain(&error).contains("certificate"), "{}", chain(&error));
    let error = reqwest::get(format!("{}/healthz", host.base))
        .await
        .unwrap_err();
    assert!(chain(&error).contains("certificate"), "{}", chain(&error));

    // The CLI: refused without the CA, saying how to give it; fine with it, by flag or by
    // environment; refused with the wrong one.
    let (code, _, err) = cli(&host.base, &[], None).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("does not trust") && err.contains("--ca-cert"),
        "{err}"
    );
    let ca = pki.ca.to_str().unwrap();
    let (code, out, err) = cli(&host.base, &["--ca-cert", ca], None).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&tenant), "{out}");
    let (code, out, err) = cli(&host.base, &[], Some(&pki.ca)).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&tenant), "{out}");
    let other_ca = pki.other_ca.to_str().unwrap();
    let (code, _, err) = cli(&host.base, &["--ca-cert", other_ca], None).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not trust"), "{err}");

    host.delete_tenant(&tenant).await;
    drop_database(&tenant_database(&tenant)).await;
    host.stop().await;
    drop_database(&database).await;
}

/// A certificate file that is not one, or a key that does not go with it, stops `serve`
/// before it joins the platform, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_stops_serve_naming_the_file() {
    let pki = pki(&unique("bad"));
    let other = mysimbdp_tests::tls::pki(&unique("bad-other"));
    for (cert, key, named) in [
        (&pki.key, &pki.key, "server.tls.cert"),
        (&pki.cert, &other.key, "does not go with"),
        (&pki.cert, &pki.cert, "server.tls.key"),
    ] {
        let mut config = config(&database_name(), "tls-cache");
        config.server.plain_http = false;
        config.server.tls = Some(mysimbdp_host::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = mysimbdp_host::serve::run(config, listener, std::future::pending())
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains(named), "{named}: {error:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_writes_through_mongodb_over_tls_with_the_ca_from_its_uri() {
    let ca = services_ca();
    let uri = format!("{MONGODB_TLS_URI}&tlsCAFile={}", ca.display());
    // Without the CA, or without TLS, the server is not reached.
    for refused in [
        MONGODB_TLS_URI.replace(
            "serverSelectionTimeoutMS=10000",
            "serverSelectionTimeoutMS=2000",
        ),
        "mongodb://127.0.0.1:27019/?replicaSet=rs2&serverSelectionTimeoutMS=2000".to_owned(),
    ] {
        let client = mongodb::Client::with_uri_str(&refused).await.unwrap();
        let ping = client
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await;
        assert!(ping.is_err(), "{refused} connected");
    }

    let database = database_name();
    let host = Host::start_with(&database, "tls-cache", |config| {
        config.platform.mongodb_uri = uri.clone();
        config.sink.mongodb_uri = uri.clone();
    })
    .await;
    let tenant = unique("tlsdb");
    let token = host.create_tenant(&tenant, None).await;
    let response = host
        .request(Method::POST, "/v1/data/readings", Some(&token))
        .json(&serde_json::json!([{ "probe": "r1", "temp": 21.5 }]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );
    // The document is on the TLS-only server, in the tenant's database.
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let stored = client
        .database(&tenant_database(&tenant))
        .collection::<mongodb::bson::Document>("readings")
        .find_one(mongodb::bson::doc! { "probe": "r1" })
        .await
        .unwrap();
    assert_eq!(stored.unwrap().get_f64("temp").unwrap(), 21.5);
    host.delete_tenant(&tenant).await;
    host.stop().await;
    client
        .database(&tenant_database(&tenant))
        .drop()
        .await
        .unwrap();
    client.database(&database).drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_queues_its_jobs_in_redis_over_tls_with_its_ca() {
    use mysimbdp_host::config::RedisConfig;
    use mysimbdp_host::redis_link::RedisLink;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = services_ca();
    let link = |url: &str, ca_cert: Option<std::path::PathBuf>| {
        RedisLink::from_config(&RedisConfig {
            url: url.to_owned(),
            namespace: "tls-test".to_owned(),
            ca_cert,
        })
        .unwrap()
    };
    // Without the CA (the system's roots), or without TLS, the server is not reached.
    for (url, ca_cert) in [(REDIS_TLS_URL, None), ("redis://127.0.0.1:6380/", None)] {
        let refused = link(url, ca_cert).connection().await;
        assert!(refused.is_err(), "{url} connected");
    }
    let trusted = link(REDIS_TLS_URL, Some(ca.clone()));
    let mut connection = trusted.connection().await.unwrap();
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");

    // A host whose job queue and quotas are there: a batch job runs to its end.
    let database = database_name();
    let host = Host::start_with(&database, "tls-cache", |config| {
        config.redis.url = REDIS_TLS_URL.to_owned();
        config.redis.ca_cert = Some(ca.clone());
    })
    .await;
    let tenant = unique("tlsq");
    let token = host.create_tenant(&tenant, None).await;
    let (status, body) = host
        .upload(&token, "orders", read(mysimbdp_fixtures::CSV_BATCH))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (good, expected) = orders_csv();
    let jobs =
        mysimbdp_tests::batch::upload_orders(&host, &token, "tls-", vec![good.into_bytes()]).await;
    let job = mysimbdp_tests::batch::wait_job_ended(
        &host,
        &token,
        &jobs[0],
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["documents"].as_u64(), Some(expected.good), "{job}");
    // The queue's keys are on the TLS server, under the host's namespace.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{database}}}:batch:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no queue keys on the TLS Redis");
    host.delete_tenant(&tenant).await;
    drop_database(&tenant_database(&tenant)).await;
    host.stop().await;
    drop_database(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_registers_in_etcd_over_tls_with_its_ca() {
    use mysimbdp_host::config::RegistryConfig;
    use mysimbdp_host::registry::Registry;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = services_ca();
    let registry = |ca_cert: Option<std::path::PathBuf>| RegistryConfig {
        etcd_endpoints: vec![ETCD_TLS_ENDPOINT.to_owned()],
        prefix: format!("/mysimbdp-test/{}", unique("tls")),
        host_lease_secs: 10,
        ca_cert,
    };
    // Without the CA the TLS-only etcd is not reached.
    assert!(Registry::connect(&registry(None)).await.is_err());

    let database = database_name();
    let host = Host::start_with(&database, "tls-cache", |config| {
        config.registry = registry(Some(ca.clone()));
    })
    .await;
    let (status, hosts) = host.admin(Method::GET, "/v1/admin/hosts", None).await;
    assert_eq!(status, StatusCode::OK, "{hosts}");
    assert_eq!(hosts.as_array().unwrap().len(), 1, "{hosts}");
    host.stop().await;
    drop_database(&database).await;
}

/// `mysimbdp stream publish` of `file` to stream `feed` as the tenant holding `token`, with
/// `--ca-cert` if given (and no CA from the environment).
async fn publish_cli(
    host: &Host,
    token: &str,
    file: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> (Option<i32>, String, String) {
    let mut command = async_command();
    command
        .args(["stream", "publish", "--stream", "feed", "--json"])
        .arg(file)
        .env("MYSIMBDP_API", &host.base)
        .env("MYSIMBDP_TOKEN", token)
        .env_remove("MYSIMBDP_CA_CERT");
    if let Some(ca) = ca {
        command.arg("--ca-cert").arg(ca);
    }
    text(&command.output().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_publishes_over_amqps_with_the_ca_and_is_refused_without_it() {
    let ca = services_ca();
    within(
        "a_tenant_publishes_over_amqps_with_the_ca_and_is_refused_without_it",
        std::time::Duration::from_secs(300),
        async {
            let database = database_name();
            // The host's own hops to the broker are TLS too: its consumers and vhost probes
            // over amqps://, provisioning over the management API's HTTPS, both verified
            // against stream.ca_cert.
            let over_tls = |config: &mut mysimbdp_host::config::ServeConfig| {
                config.batch.workers = 0;
                config.stream.reconcile_ms = 200;
                config.stream.public_amqp_url = PUBLIC_AMQPS_URL.to_owned();
                config.stream.amqp_url = AMQPS_URL.to_owned();
                config.stream.management_url = RABBITMQ_MANAGEMENT_HTTPS_URL.to_owned();
            };
            // Without the CA the host does not start: the management API is not trusted.
            let mut untrusting = config(&database, "tls-cache");
            over_tls(&mut untrusting);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let error = mysimbdp_host::serve::run(untrusting, listener, std::future::pending())
                .await
                .unwrap_err();
            assert!(format!("{error:#}").contains("certificate"), "{error:#}");
            let host = Host::start_with(&database, "tls-cache", |config| {
                over_tls(config);
                config.stream.ca_cert = Some(ca.clone());
            })
            .await;
            let tenant = unique("tlsmq");
            let token = host.create_tenant(&tenant, None).await;
            let (status, body) = host
                .upload(&token, "sensors", read(mysimbdp_fixtures::JSON_STREAM))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let stream = serde_json::json!({
                "name": "feed", "app": "sensors", "collection": "readings"
            });
            let (status, created) = host
                .tenant(&token, Method::POST, "/v1/streams", Some(stream))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
            let url = created["connection"]["url"].as_str().unwrap();
            assert!(
                url.starts_with(&format!("{PUBLIC_AMQPS_URL}/")),
                "the tenant is not told the TLS address: {created}"
            );

            // 40 readings, two metrics each.
            let file = scratch("tls-amqps").join(format!("{tenant}.ndjson"));
            let lines: Vec<String> = (0..40)
                .map(|i| {
                    serde_json::json!({
                        "device": "tls-dev", "ts": "2026-11-21T10:00:00Z",
                        "readings": { "temp": i, "hum": 40 }
                    })
                    .to_string()
                })
                .collect();
            std::fs::write(&file, lines.join("\n") + "\n").unwrap();

            // Without the CA (the system's roots only), or trusting another CA: refused at
            // the handshake, saying how to give the CA.
            let other = pki(&unique("amqps-other"));
            for refused_with in [None, Some(other.other_ca.as_path())] {
                let (code, _, err) = publish_cli(&host, &token, &file, refused_with).await;
                assert_eq!(code, Some(1), "{refused_with:?}: {err}");
                assert!(
                    err.contains("does not trust")
                        && err.contains("certificate")
                        && err.contains("--ca-cert"),
                    "{refused_with:?}: {err}"
                );
            }

            // With the CA: every message confirmed over TLS, and ingested.
            let (code, out, err) = publish_cli(&host, &token, &file, Some(&ca)).await;
            assert_eq!(code, Some(0), "{err}");
            let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(summary["confirmed"], 40, "{summary}");
            assert_eq!(summary["refused"], 0, "{summary}");
            let readings = tenant_collection(&tenant, "readings").await;
            wait_until(
                "the readings published over TLS are stored",
                std::time::Duration::from_secs(60),
                async || {
                    let n = readings
                        .count_documents(mongodb::bson::doc! {})
                        .await
                        .unwrap();
                    assert!(n <= 80, "{n} documents, more than the 80 published");
                    n
                },
                |n| *n == 80,
            )
            .await;

            host.delete_tenant(&tenant).await;
            drop_database(&tenant_database(&tenant)).await;
            host.stop().await;
            drop_database(&database).await;
        },
    )
    .await;
}
