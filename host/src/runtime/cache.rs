//! Compiled components cached on disk, keyed by the component's digest and the engine's
//! compatibility hash, so a different wasmtime version or setting never loads a stale one.

use super::compile::Compiler;
use super::failure::{Failure, FailureClass};
use crate::config::EngineConfig;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Compiled now (and written to the cache).
    Compiled,
    /// Deserialized from the cache.
    Cached,
}

/// The on-disk cache of compiled components, and the compiler that fills it.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
    compiler: Compiler,
}

impl ArtifactCache {
    pub(crate) fn new(engine: &Engine, dir: PathBuf, compiler: &EngineConfig) -> Result<Self> {
        // Only this user may write there: whatever is in this directory is later loaded as
        // native code (see `deserialize`).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the component cache directory {dir:?}"))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            compiler: Compiler::new(compiler, dir.clone())?,
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled form of `wasm` from the cache, or compiles it in a child process
    /// (bounded in time, memory and concurrency: see [`Compiler`]) and caches it.
    pub(crate) async fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> Result<(Component, String, Origin), Failure> {
        let digest = digest(wasm);
        let path = self.path(&digest);
        if path.exists() {
            match read_sealed(&path).and_then(|body| deserialize(engine, &body)) {
                Ok(component) => return Ok((component, digest, Origin::Cached)),
                // A truncated or foreign file: fall through, recompile and overwrite it.
                Err(error) => {
                    tracing::warn!(?path, "ignoring unreadable cached component: {error:#}")
                }
            }
        }
        let artifact = self.compiler.compile(wasm, &digest).await?;
        let component = deserialize(engine, &artifact).map_err(|error| {
            Failure::new(
                FailureClass::HostError,
                format!("loading the compiler's output: {error:#}"),
            )
        })?;
        if let Err(error) = store(&artifact, &path) {
            // The cache is an optimisation: a read-only or full disk must not fail the load.
            tracing::warn!(?path, "could not cache compiled component: {error:#}");
        }
        Ok((component, digest, Origin::Compiled))
    }
}

/// The content digest that names a component version: the hex sha256 of its bytes.
pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

pub(crate) fn root_cause(error: &wasmtime::Error) -> String {
    error
        .chain()
        .last()
        .map(ToString::to_string)
        .unwrap_or_else(|| error.to_string())
}

/// A cache file is the sha256 of the serialized component followed by the component: a
/// torn write or a flipped bit on disk is caught here instead of being run as native code.
const SEAL_BYTES: usize = 32;

/// The body of a cache file whose seal matches.
fn read_sealed(path: &Path) -> Result<Vec<u8>> {
    let mut file = std::fs::read(path).with_context(|| format!("reading {path:?}"))?;
    if file.len() < SEAL_BYTES {
        anyhow::bail!("{path:?} is too short to be a cached component");
    }
    let body = file.split_off(SEAL_BYTES);
    if Sha256::digest(&body).as_slice() != file.as_slice() {
        anyhow::bail!("{path:?} does not match its checksum");
    }
    Ok(body)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, body: &[u8]) -> Result<Component> {
    // SAFETY: `body` is what `Engine::precompile_component` produced, either just now in our
    // own compile child (the same executable and engine settings, writing into the operator's
    // private cache directory), or earlier, sealed by `store` and checked by `read_sealed`,
    // under a name carrying the engine's compatibility hash; wasmtime also refuses
    // artifacts of other engines or settings.
    let component = unsafe { Component::deserialize(engine, body) }.map_err(anyhow::Error::from)?;
    Ok(component)
}

/// Writes atomically (temp file + rename) so a concurrent reader never sees half a file.
fn store(body: &[u8], path: &Path) -> Result<()> {
    let mut bytes = Vec::with_capacity(SEAL_BYTES + body.len());
    bytes.extend_from_slice(&Sha256::digest(body));
    bytes.extend_from_slice(body);
    // Unique per process and write, so concurrent compiles of one component never interleave
    // their bytes in one file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {tmp:?}"))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {tmp:?} to {path:?}"))?;
    Ok(())
}
