//! A `serve` inside the test process, on a platform database, registry prefix and queue
//! namespace of its own, and HTTP calls that check the error shape of every refusal.

use crate::cleanup::clear_registry;
use crate::files::{mysimbdp_binary, scratch};
use crate::naming::database_name;
use crate::poll::wait_until;
use mysimbdp_host::config::ServeConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::oneshot;

/// The operator token of test hosts.
pub const OPERATOR: &str = "test-operator-token-0123456789abcdef";

/// A `serve` running inside the test process, on its own platform database.
pub struct Host {
    pub base: String,
    pub database: String,
    pub stop: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub http: reqwest::Client,
}

/// A valid config of a test host on `database`, its compile cache in scratch `cache`.
pub fn config(database: &str, cache: &str) -> ServeConfig {
    let mut config = ServeConfig::default();
    config.server.operator_token = OPERATOR.to_owned();
    // Tests speak plain HTTP to their hosts unless they are about TLS (tls.rs).
    config.server.plain_http = true;
    config.server.shutdown_grace_ms = 5_000;
    config.platform.mongodb_uri = crate::services::MONGODB_URI.to_owned();
    config.platform.database = database.to_owned();
    config.sandbox.engine.cache_dir = Some(scratch(cache));
    // Tests run the host in-process: the compile child is the built `mysimbdp`, not this binary.
    config.sandbox.engine.compiler = Some(mysimbdp_binary());
    config.registry.etcd_endpoints = vec![crate::services::ETCD_ENDPOINT.to_owned()];
    config.registry.prefix = format!("/mysimbdp-test/{database}");
    config.redis.namespace = database.to_owned();
    config.batch.staging_dir = Some(scratch("staging").join(database));
    config.batch.retry_backoff_ms = 100;
    config.validate().unwrap();
    config
}

impl Host {
    /// A host on a platform database of its own.
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

    /// A host serving its API over HTTPS with the certificate of `pki` (plain HTTP off) and a
    /// header timeout of 1.5 s; its client trusts `pki`'s CA.
    pub async fn start_tls(database: &str, cache: &str, pki: &crate::tls::Pki) -> Self {
        let mut config = config(database, cache);
        config.server.plain_http = false;
        config.server.tls = Some(mysimbdp_host::config::TlsFiles {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
        });
        // Short, so a test sees a silent connection closed (the handshake has this long too).
        config.server.header_timeout_ms = 1500;
        config.validate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(mysimbdp_host::serve::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
        let host = Self {
            base,
            database: database.to_owned(),
            stop: Some(stop),
            served,
            http: reqwest::Client::builder()
                .tls_certs_only([ca])
                .build()
                .unwrap(),
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

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base);
        // The last answer (or why there was none): what the panic shows if it never comes.
        let _ready: Result<StatusCode, String> = wait_until(
            &format!("the host at {} is ready", self.base),
            Duration::from_secs(20),
            async || {
                self.http
                    .get(&url)
                    .send()
                    .await
                    .map(|response| response.status())
                    .map_err(|e| e.to_string())
            },
            |status| status.as_ref().is_ok_and(|s| s.is_success()),
        )
        .await;
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

    /// Deletes a tenant as the operator (its broker vhost and user too).
    pub async fn delete_tenant(&self, tenant: &str) {
        let (status, body) = self
            .admin(Method::DELETE, &format!("/v1/admin/tenants/{tenant}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
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
        mongodb::Client::with_uri_str(crate::services::MONGODB_URI)
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
