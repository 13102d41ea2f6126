//! mysimbdp: a multi-tenant ingestion platform that runs tenants' WebAssembly apps.
//!
//! This crate is the `mysimbdp` binary's library: everything `main.rs` wires together lives
//! here, so that tests can drive it. The API's wire types live in `mysimbdp-api`, the
//! remote commands in `mysimbdp-client`; docs/architecture.md maps the layers.

/// The HTTP API: routes, auth, errors, OpenAPI, the request metrics middleware.
pub mod api;
/// App admission (validate, compile, probe, store) and loading on any host.
pub mod app_store;
/// Batch ingestion: admission, staging, the job queue in Redis, the workers.
pub mod batch;
/// The command line: `serve`, the local commands (`app check|run`, `registry`) and the
/// remote ones, delegated to `mysimbdp-client`.
pub mod cli;
/// Operator configuration, with documented defaults and env overrides.
pub mod config;
/// Data as a service: the rules tenant queries and writes follow.
pub mod daas;
/// Documents as they leave an app: validation, deterministic `_id`s.
pub mod documents;
/// The host's log output: one line per record, whatever a tenant put into a field.
pub mod logging;
/// Prometheus metrics: the families every layer counts into.
pub mod metrics;
/// The names tenants and apps may take.
pub mod names;
/// The platform database: tenants, profiles, apps, versions, components.
pub mod platform;
/// Tenant profiles: constraints, limits and sink settings, validated and versioned.
pub mod profile;
/// Readiness: whether the backing services this host's roles need answer.
pub mod readiness;
/// A Redis connection opened on first use, shared by the batch queue and stream quotas.
pub mod redis_link;
/// Service discovery (tenants' coredms and other services) and host membership in etcd.
pub mod registry;
/// The wasmtime sandbox that runs tenant apps under fuel, memory, deadline and output limits.
pub mod runtime;
/// `mysimbdp serve`: the platform's process.
pub mod serve;
/// Where a tenant's documents go: the shared or a dedicated coredms, resolved and watched.
pub mod sink;
/// Stream ingestion: broker provisioning, consumers, reports, monitor, quotas.
pub mod stream;
/// A tenant's apps as the API drives them: uploads, activation, rollback, dry runs.
pub mod tenant_apps;
/// Tenants as the operator manages them: create, delete, suspend, tokens, profiles.
pub mod tenants;
/// API tokens: generation and hashing.
pub mod tokens;
/// Tenants' use of their quotas and the platform's figures over time.
pub mod usage;
