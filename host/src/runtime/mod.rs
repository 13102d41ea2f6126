//! The sandbox: one wasmtime `Engine` per process, components compiled once and cached, an
//! `InstancePre` per app, and a fresh `Store` per call with fuel, memory, deadline, output and
//! host-call limits. After any trap the Store is dropped, never reused.

pub mod bindings;
mod cache;
mod check;
pub mod compile;
mod engine;
mod failure;
pub(crate) mod host;
mod invoke;
mod state;

pub use bindings::{AppError, Document, Message, Quality};
pub use cache::{Origin, digest};
pub use check::{AppKind, Contract};
pub use failure::{Failure, FailureClass, Usage};
pub use invoke::{BatchInput, BatchReport, CallOptions, MessageOutcome, StreamReport};
pub use state::OutputBatch;

use crate::config::SandboxConfig;
use anyhow::{Context, Result};
use bindings::{batch::BatchAppPre, stream::StreamAppPre, v0_1};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use state::HostState;

/// Runs tenant apps. Cheap to share behind an `Arc`; one per process.
pub struct Runtime {
    engine: Engine,
    batch_linker: Linker<HostState>,
    stream_linker: Linker<HostState>,
    cache: cache::ArtifactCache,
    config: SandboxConfig,
    _ticker: engine::EpochTicker,
}

/// A loaded app version: validated, compiled (or loaded from the cache) and pre-linked.
pub struct App {
    /// The component's content digest (hex sha256): its immutable version id.
    pub digest: String,
    /// Batch or stream.
    pub kind: AppKind,
    /// The version of the `mysimbdp:ingest` package it was built against.
    pub contract: Contract,
    /// The component's size in bytes.
    pub size: usize,
    /// What it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// Compiled now or loaded from the cache.
    pub origin: Origin,
    /// How long loading took.
    pub load_time: Duration,
    pre: AppPre,
}

/// The pre-linked app, by world and contract version.
enum AppPre {
    Batch(BatchAppPre<HostState>),
    Stream(StreamAppPre<HostState>),
    BatchV0_1(v0_1::batch::BatchAppPre<HostState>),
    StreamV0_1(v0_1::stream::StreamAppPre<HostState>),
}

impl Runtime {
    /// Validates the configuration, builds the engine and linkers, and starts the epoch ticker.
    /// Each linker serves its world in every contract version: the versions' interfaces have
    /// distinct names (`…@0.1.0`, `…@0.2.0`), so one linker holds them side by side.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        config.validate().context("invalid sandbox configuration")?;
        let engine = engine::build(&config.engine)?;
        let mut batch_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut batch_linker).map_err(anyhow::Error::from)?;
        bindings::batch::BatchApp::add_to_linker::<_, HasSelf<_>>(&mut batch_linker, |s| s)
            .map_err(anyhow::Error::from)?;
        v0_1::batch::BatchApp::add_to_linker::<_, HasSelf<_>>(&mut batch_linker, |s| s)
            .map_err(anyhow::Error::from)?;
        let mut stream_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut stream_linker).map_err(anyhow::Error::from)?;
        bindings::stream::StreamApp::add_to_linker::<_, HasSelf<_>>(&mut stream_linker, |s| s)
            .map_err(anyhow::Error::from)?;
        v0_1::stream::StreamApp::add_to_linker::<_, HasSelf<_>>(&mut stream_linker, |s| s)
            .map_err(anyhow::Error::from)?;
        let cache = cache::ArtifactCache::new(&engine, config.engine.cache_dir(), &config.engine)?;
        let ticker = engine::EpochTicker::start(
            engine.clone(),
            Duration::from_millis(config.engine.epoch_tick_ms),
        )?;
        Ok(Self {
            engine,
            batch_linker,
            stream_linker,
            cache,
            config,
            _ticker: ticker,
        })
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Loads a component: checks it is a component of one of our worlds that imports only
    /// what the platform provides, compiles it (or loads it from the cache) and pre-links it.
    /// For components already admitted (or run locally): no import is refused by prefix.
    pub async fn load(&self, wasm: &[u8]) -> Result<App, Failure> {
        self.admit(wasm, &[]).await
    }

    /// Admits a component, in order: size and header, world and imports from its own
    /// sections (also refusing imports starting with any `refused` prefix), all without a
    /// compiler; then compiles it in a bounded child process (or loads it from the cache);
    /// then type-checks it against its world while pre-linking it.
    pub async fn admit(&self, wasm: &[u8], refused: &[String]) -> Result<App, Failure> {
        let started = Instant::now();
        check::check_binary(wasm, self.config.engine.max_component_mib * 1024 * 1024)?;
        let (imports, exports) = check::interface(wasm)?;
        let (kind, contract) = check::classify(&imports, &exports, refused)?;
        let (component, digest, origin) = self.cache.load(&self.engine, wasm).await?;
        let linker = match kind {
            AppKind::Batch => &self.batch_linker,
            AppKind::Stream => &self.stream_linker,
        };
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| Failure::invalid(format!("cannot be linked as a {kind} app: {e:#}")))?;
        let type_error = |e: wasmtime::Error| {
            Failure::invalid(format!(
                "does not match the {} world of {contract}: {e:#}",
                kind.world()
            ))
        };
        let pre = match (kind, contract) {
            (AppKind::Batch, Contract::V0_2) => {
                AppPre::Batch(BatchAppPre::new(instance_pre).map_err(type_error)?)
            }
            (AppKind::Stream, Contract::V0_2) => {
                AppPre::Stream(StreamAppPre::new(instance_pre).map_err(type_error)?)
            }
            (AppKind::Batch, Contract::V0_1) => {
                AppPre::BatchV0_1(v0_1::batch::BatchAppPre::new(instance_pre).map_err(type_error)?)
            }
            (AppKind::Stream, Contract::V0_1) => AppPre::StreamV0_1(
                v0_1::stream::StreamAppPre::new(instance_pre).map_err(type_error)?,
            ),
        };
        Ok(App {
            digest,
            kind,
            contract,
            size: wasm.len(),
            imports,
            exports,
            origin,
            load_time: started.elapsed(),
            pre,
        })
    }
}
