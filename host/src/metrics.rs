//! Prometheus metrics of the host: HTTP requests by route and status, their latency, app
//! uploads, daas writes, batch jobs and stream batches. It sits below every layer that counts
//! (api, batch, stream), so none of them depends on another to reach it; the HTTP middleware
//! that feeds the request families lives in `api::metrics`.

use mysimbdp_api::JobStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;

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
    stream_messages: Family<StreamOutcomeLabels, Counter>,
    stream_documents: Family<StreamLabels, Counter>,
    stream_bytes: Family<StreamLabels, Counter>,
    stream_latency: HistogramFamily<StreamLabels>,
    stream_consumers: Family<StreamLabels, Gauge>,
    stream_depth: Family<StreamLabels, Gauge>,
    stream_throttled: Family<StreamLabels, Gauge>,
    stream_quota_degraded: Family<TenantLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    tenant: String,
    stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamOutcomeLabels {
    tenant: String,
    stream: String,
    outcome: String,
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
            "Batch job attempts by tenant and outcome (done, failed, retrying, paused, waiting, dead)",
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
        let stream_messages = Family::<StreamOutcomeLabels, Counter>::default();
        registry.register(
            "stream_messages",
            "Stream messages settled by this host, by tenant, stream and outcome (ok, dead_lettered, requeued)",
            stream_messages.clone(),
        );
        let stream_documents = Family::<StreamLabels, Counter>::default();
        registry.register(
            "stream_documents",
            "Documents written by this host's stream consumers",
            stream_documents.clone(),
        );
        let stream_bytes = Family::<StreamLabels, Counter>::default();
        registry.register(
            "stream_bytes",
            "Payload bytes of stream messages settled by this host",
            stream_bytes.clone(),
        );
        let stream_latency: HistogramFamily<StreamLabels> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register(
            "stream_ingestion_latency_seconds",
            "From delivery to the completed write, per message",
            stream_latency.clone(),
        );
        let stream_consumers = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "stream_consumers",
            "Consumers of the stream running on this host",
            stream_consumers.clone(),
        );
        let stream_depth = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "stream_queue_depth",
            "Messages waiting in the stream's queue at the last report",
            stream_depth.clone(),
        );
        let stream_throttled = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "stream_throttled",
            "1 while the tenant's consumption of the stream is paused over its quota",
            stream_throttled.clone(),
        );
        let stream_quota_degraded = Family::<TenantLabels, Counter>::default();
        registry.register(
            "stream_quota_degraded_admissions",
            "Stream batches this host admitted against its own quota counter because the shared one (Redis) was unreachable, by tenant",
            stream_quota_degraded.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            stream_quota_degraded,
            stream_messages,
            stream_documents,
            stream_bytes,
            stream_latency,
            stream_consumers,
            stream_depth,
            stream_throttled,
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

    /// Counts one settled stream batch.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_batch(
        &self,
        tenant: &str,
        stream: &str,
        ok: u64,
        dead_lettered: u64,
        requeued: u64,
        bytes: u64,
        documents: u64,
    ) {
        for (outcome, count) in [
            ("ok", ok),
            ("dead_lettered", dead_lettered),
            ("requeued", requeued),
        ] {
            self.stream_messages
                .get_or_create(&StreamOutcomeLabels {
                    tenant: tenant.to_owned(),
                    stream: stream.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc_by(count);
        }
        let labels = StreamLabels {
            tenant: tenant.to_owned(),
            stream: stream.to_owned(),
        };
        self.stream_bytes.get_or_create(&labels).inc_by(bytes);
        self.stream_documents
            .get_or_create(&labels)
            .inc_by(documents);
    }

    /// Counts a stream batch admitted by this host's own quota counter (Redis unreachable).
    pub fn stream_quota_degraded(&self, tenant: &str) {
        self.stream_quota_degraded
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .inc();
    }

    /// Observes the ingestion latency of a batch's messages.
    pub fn stream_latencies(
        &self,
        tenant: &str,
        stream: &str,
        latencies: impl Iterator<Item = Duration>,
    ) {
        let histogram = self.stream_latency.get_or_create(&StreamLabels {
            tenant: tenant.to_owned(),
            stream: stream.to_owned(),
        });
        for latency in latencies {
            histogram.observe(latency.as_secs_f64());
        }
    }

    /// Sets a stream's gauges at a report.
    pub fn stream_gauges(
        &self,
        tenant: &str,
        stream: &str,
        consumers: u32,
        depth: u64,
        throttled: bool,
    ) {
        let labels = StreamLabels {
            tenant: tenant.to_owned(),
            stream: stream.to_owned(),
        };
        self.stream_consumers
            .get_or_create(&labels)
            .set(consumers.into());
        self.stream_depth
            .get_or_create(&labels)
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.stream_throttled
            .get_or_create(&labels)
            .set(i64::from(throttled));
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
    pub fn batch_job(&self, tenant: &str, status: JobStatus, documents: u64, bytes: u64) {
        self.batch_jobs
            .get_or_create(&TenantOutcomeLabels {
                tenant: tenant.to_owned(),
                outcome: status.as_str().to_owned(),
            })
            .inc();
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        self.batch_documents
            .get_or_create(&labels)
            .inc_by(documents);
        if status == JobStatus::Done {
            self.batch_bytes.get_or_create(&labels).inc_by(bytes);
        }
    }

    /// Counts and times one HTTP request under its route template.
    pub fn http_request(&self, method: String, route: String, status: u16, took: Duration) {
        self.latency
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
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
