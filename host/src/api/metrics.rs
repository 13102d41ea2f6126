//! Prometheus metrics of the host: HTTP requests by route and status, their latency, app
//! uploads by outcome. Later subsystems register their own families in the same registry.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The host's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    uploads: Family<OutcomeLabels, Counter>,
    daas: Family<TenantOutcomeLabels, Counter>,
    batch_jobs: Family<TenantOutcomeLabels, Counter>,
    batch_documents: Family<TenantLabels, Counter>,
    batch_bytes: Family<TenantLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOutcomeLabels {
    tenant: String,
    outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the API's metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mysimbdp");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let latency: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        let uploads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "app_uploads",
            "App uploads by outcome (admitted, refused)",
            uploads.clone(),
        );
        let daas = Family::<TenantOutcomeLabels, Counter>::default();
        registry.register(
            "daas_documents",
            "Documents written through the daas API, by tenant and outcome (inserted, rejected)",
            daas.clone(),
        );
        let batch_jobs = Family::<TenantOutcomeLabels, Counter>::default();
        registry.register(
            "batch_job_attempts",
            "Batch job attempts by tenant and outcome (done, failed, retrying, paused)",
            batch_jobs.clone(),
        );
        let batch_documents = Family::<TenantLabels, Counter>::default();
        registry.register(
            "batch_documents",
            "Documents written by batch jobs, by tenant",
            batch_documents.clone(),
        );
        let batch_bytes = Family::<TenantLabels, Counter>::default();
        registry.register(
            "batch_bytes",
            "Bytes of files ingested by finished batch jobs, by tenant",
            batch_bytes.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            uploads,
            daas,
            batch_jobs,
            batch_documents,
            batch_bytes,
        }
    }

    /// Lets another subsystem register its metrics.
    pub fn register(&self, register: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.registry.lock() {
            register(&mut registry);
        }
    }

    /// Counts an upload.
    pub fn app_upload(&self, outcome: &str) {
        self.uploads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts documents written through the daas API.
    pub fn daas_documents(&self, tenant: &str, inserted: u64, rejected: u64) {
        for (outcome, count) in [("inserted", inserted), ("rejected", rejected)] {
            self.daas
                .get_or_create(&TenantOutcomeLabels {
                    tenant: tenant.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// Counts a batch job attempt that ended with `status`.
    pub fn batch_job(&self, tenant: &str, status: &str, documents: u64, bytes: u64) {
        self.batch_jobs
            .get_or_create(&TenantOutcomeLabels {
                tenant: tenant.to_owned(),
                outcome: status.to_owned(),
            })
            .inc();
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        self.batch_documents
            .get_or_create(&labels)
            .inc_by(documents);
        if status == "done" {
            self.batch_bytes.get_or_create(&labels).inc_by(bytes);
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, String> {
        let registry = self.registry.lock().map_err(|e| e.to_string())?;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .map_err(|e| e.to_string())?;
        Ok(text)
    }
}

/// Middleware: counts and times each request under its route template (never the raw path,
/// which would make one series per tenant or app name).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
