//! mysimbdp: a multi-tenant ingestion platform that runs tenants' WebAssembly apps.
//!
//! This crate is the `mysimbdp` binary's library: everything `main.rs` wires together lives
//! here, so that tests can drive it.

/// The command line: `mysimbdp app check|run`.
pub mod cli;
/// Operator configuration: sandbox limits and engine settings, with documented defaults.
pub mod config;
/// Documents as they leave an app: validation, deterministic `_id`s.
pub mod documents;
/// The wasmtime sandbox that runs tenant apps under fuel, memory, deadline and output limits.
pub mod runtime;
