//! Shared helpers of the platform's integration tests: a `serve` inside the test process on
//! its own platform database and registry prefix, a real `serve` process, and HTTP calls
//! that check the error shape of every refusal.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::config::ServeConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

pub const OPERATOR: &str = "test-operator-token-0123456789abcdef";

/// A `serve` running inside the test process, on its own platform database.
pub struct Host {
    pub base: String,
    pub database: String,
    pub stop: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
}

pub fn config(database: &str, cache: &str) -> ServeConfig {
    let mut config = ServeConfig::default();
    config.server.operator_token = OPERATOR.to_owned();
    config.server.shutdown_grace_ms = 5_000;
    config.platform.mongodb_uri = mysimbdp_tests::MONGODB_URI.to_owned();
    config.platform.database = database.to_owned();
    config.sandbox.engine.cache_dir = Some(scratch(cache));
    // Tests run the host in-process: the compile child is the built `mysimbdp`, not this binary.
    config.sandbox.engine.compiler = Some(env!("CARGO_BIN_EXE_mysimbdp").into());
    config.registry.etcd_endpoints = vec![mysimbdp_tests::ETCD_ENDPOINT.to_owned()];
    config.registry.prefix = format!("/mysimbdp-test/{database}");
    config.batch.namespace = database.to_owned();
    config.batch.staging_dir = Some(scratch("staging").join(database));
    config.batch.retry_backoff_ms = 100;
    config.validate().unwrap();
    config
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn database_name() -> String {
    mysimbdp_tests::unique("cp").replace('-', "_")
}

impl Host {
    pub async fn start() -> Self {
        Self::start_on(&database_name(), "control-plane-cache").await
    }

    pub async fn start_on(database: &str, cache: &str) -> Self {
        Self::start_with(database, cache, |_| {}).await
    }

    /// A host whose config `adjust` changes first.
    pub async fn start_with(
        database: &str,
        cache: &str,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let mut config = config(database, cache);
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(mysimbdp_host::serve::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let host = Self {
            base,
            database: database.to_owned(),
            stop: Some(stop),
            served,
            http: reqwest::Client::new(),
        };
        host.wait_ready().await;
        host
    }

    /// A client of a `serve` running elsewhere (a spawned process).
    pub fn remote(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            database: String::new(),
            stop: None,
            served: tokio::spawn(async { Ok(()) }),
            http: reqwest::Client::new(),
        }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(response) = self.http.get(format!("{}/readyz", self.base)).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the host at {} never became ready", self.base);
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends and returns the status and the JSON body (Null when empty).
    pub async fn call(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status} with a non-JSON body {text:?}: {e}"))
        };
        if !status.is_success() {
            assert_error_shape(status, &body);
        }
        (status, body)
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, Some(OPERATOR));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.call(request).await
    }

    pub async fn tenant(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, Some(token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.call(request).await
    }

    /// Creates a tenant and returns its token.
    pub async fn create_tenant(&self, id: &str, profile: Option<Value>) -> String {
        let mut body = json!({ "id": id });
        if let Some(profile) = profile {
            body["profile"] = profile;
        }
        let (status, created) = self
            .admin(Method::POST, "/v1/admin/tenants", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["token"].as_str().unwrap().to_owned()
    }

    pub async fn upload(&self, token: &str, name: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
        self.call(
            self.request(Method::PUT, &format!("/v1/apps/{name}"), Some(token))
                .header("content-type", "application/wasm")
                .body(wasm),
        )
        .await
    }

    /// Sets a tenant's profile from TOML text.
    pub async fn put_profile(&self, tenant: &str, toml: &'static str) -> (StatusCode, Value) {
        let path = format!("/v1/admin/tenants/{tenant}/profile");
        self.call(
            self.request(Method::PUT, &path, Some(OPERATOR))
                .header("content-type", "application/toml")
                .body(toml),
        )
        .await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.served)
            .await
            .expect("the host stops within its grace period")
            .unwrap()
            .unwrap();
        self.platform_db().await.drop().await.unwrap();
        clear_registry(&self.database).await;
    }

    pub async fn platform_db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
            .await
            .unwrap()
            .database(&self.database)
    }
}

pub fn assert_error_shape(status: StatusCode, body: &Value) {
    let error = &body["error"];
    assert_eq!(error["status"], status.as_u16(), "{body}");
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn orders_csv() -> (String, fixtures::orders::Expected) {
    let (bytes, expected) = fixtures::orders::generate(16 * 1024, 10);
    (String::from_utf8(bytes).unwrap(), expected)
}

/// A real `mysimbdp serve` process; its address is read from its log.
pub struct Process {
    pub child: tokio::process::Child,
    pub base: String,
    /// Its log lines so far (stderr).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub async fn spawn_serve(database: &str, cache: &str) -> Process {
    spawn_serve_with(database, cache, "", "").await
}

/// A real `serve` on the test's own registry prefix, queue namespace and staging directory,
/// with extra keys for its `[registry]` and `[batch]` tables.
pub async fn spawn_serve_with(
    database: &str,
    cache: &str,
    registry_extra: &str,
    batch_extra: &str,
) -> Process {
    let config = scratch("configs").join(format!("{database}-{cache}.toml"));
    std::fs::write(
        &config,
        format!(
            "[registry]\nprefix = \"/mysimbdp-test/{database}\"\n{registry_extra}\n\
             [batch]\nnamespace = \"{database}\"\nstaging_dir = {:?}\n{batch_extra}\n",
            scratch("staging").join(database)
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mysimbdp"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
        .env("MYSIMBDP_LISTEN", "127.0.0.1:0")
        .env("MYSIMBDP_MONGODB_URI", mysimbdp_tests::MONGODB_URI)
        .env("MYSIMBDP_PLATFORM_DATABASE", database)
        .env("MYSIMBDP_CACHE_DIR", scratch(cache))
        .env("MYSIMBDP_ETCD_ENDPOINTS", mysimbdp_tests::ETCD_ENDPOINT)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("listening on ") {
                let rest = &line[at + "listening on ".len()..];
                return rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .expect("serve starts within a minute");
    // Keep draining its log so it never blocks on a full pipe; keep the lines for tests.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Process { child, base, log }
}

impl Process {
    pub async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("serve stops on SIGTERM")
            .unwrap();
        assert!(exit.success(), "serve exited with {exit}");
    }
}

/// Deletes every etcd key a test wrote under its own prefix.
pub async fn clear_registry(database: &str) {
    let mut client = etcd_client::Client::connect([mysimbdp_tests::ETCD_ENDPOINT], None)
        .await
        .unwrap();
    client
        .delete(
            format!("/mysimbdp-test/{database}/"),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
}

/// The process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// A collection of a tenant's own database on the shared coredms (`tenant_<id>`).
pub async fn tenant_collection(
    tenant: &str,
    collection: &str,
) -> mongodb::Collection<mongodb::bson::Document> {
    mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
        .await
        .unwrap()
        .database(&format!("tenant_{}", tenant.replace('-', "_")))
        .collection(collection)
}
