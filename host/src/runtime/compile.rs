//! Compiling a component in a child process: `mysimbdp __compile` runs under RLIMIT_AS and
//! RLIMIT_CPU and is killed at the compile timeout, so a compile bomb is refused without
//! leaving a compiler thread burning the host's CPU or holding its memory, and at most
//! `max_concurrent_compiles` compiles run at once.

use super::engine;
use super::failure::{Failure, FailureClass};
use crate::config::EngineConfig;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

/// The hidden command the host runs itself with to compile one component.
pub const COMPILE_COMMAND: &str = "__compile";

/// The child's exit code when wasmtime refuses the component (its reason is on stderr); any
/// other failure is the child's limits or a crash.
const EXIT_INVALID: u8 = 65;

/// How much of the child's stderr is kept for the refusal message.
const STDERR_BYTES: u64 = 4096;

/// Compiles components in child processes, a bounded number at a time.
pub(crate) struct Compiler {
    exe: PathBuf,
    engine: EngineConfig,
    timeout: Duration,
    scratch: PathBuf,
    slots: Semaphore,
}

impl Compiler {
    /// A compiler running `config.compiler()`, writing its scratch files under `scratch` (the
    /// private cache directory: the artifact is loaded as native code).
    pub(crate) fn new(config: &EngineConfig, scratch: PathBuf) -> Result<Self> {
        Ok(Self {
            exe: config.compiler()?,
            engine: config.clone(),
            timeout: Duration::from_millis(config.compile_timeout_ms),
            scratch,
            slots: Semaphore::new(config.max_concurrent_compiles),
        })
    }

    /// The serialized compiled form of `wasm` (what `Engine::precompile_component` returns),
    /// compiled by a child process. Waits for a compile slot first: a waiting upload is only
    /// delayed, and each slot is held at most the compile timeout.
    pub(crate) async fn compile(&self, wasm: &[u8], digest: &str) -> Result<Vec<u8>, Failure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| host_error(format!("compile slots closed: {e}")))?;
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{digest}.compile-{}-{n}", std::process::id());
        let scratch = Scratch {
            input: self.scratch.join(format!("{stem}.wasm")),
            output: self.scratch.join(format!("{stem}.cwasm")),
        };
        tokio::fs::write(&scratch.input, wasm)
            .await
            .map_err(|e| host_error(format!("writing {:?}: {e}", scratch.input)))?;
        let engine = serde_json::to_string(&self.engine)
            .map_err(|e| host_error(format!("encoding the engine settings: {e}")))?;
        let memory_mib = self.engine.compile_memory_mib;
        let cpu_seconds = cpu_seconds(self.timeout);
        let mut child = tokio::process::Command::new(&self.exe)
            .arg(COMPILE_COMMAND)
            .arg("--input")
            .arg(&scratch.input)
            .arg("--output")
            .arg(&scratch.output)
            .arg("--engine")
            .arg(engine)
            .arg("--memory-mib")
            .arg(memory_mib.to_string())
            .arg("--cpu-seconds")
            .arg(cpu_seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // An upload whose request is dropped mid-compile must not leave the child running.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| host_error(format!("starting the compiler {:?}: {e}", self.exe)))?;
        let stderr = child.stderr.take();
        let stderr = tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(stderr) = stderr {
                // Keep the head; drain the rest so the child never blocks on a full pipe.
                let mut stderr = stderr;
                let _ = (&mut stderr)
                    .take(STDERR_BYTES)
                    .read_to_end(&mut text)
                    .await;
                let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            }
            String::from_utf8_lossy(&text).trim().to_owned()
        });
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => {
                status.map_err(|e| host_error(format!("waiting for the compiler: {e}")))?
            }
            Err(_) => {
                // SIGKILL and reap: the compile stops now, not when Cranelift is done.
                if let Err(error) = child.kill().await {
                    tracing::warn!("could not stop the compiler process: {error}");
                }
                return Err(Failure::invalid(format!(
                    "compiling the component took longer than {:?}; the compiler was stopped",
                    self.timeout
                )));
            }
        };
        let stderr = stderr.await.unwrap_or_default();
        if status.success() {
            return tokio::fs::read(&scratch.output).await.map_err(|e| {
                host_error(format!(
                    "reading the compiled component {:?}: {e}",
                    scratch.output
                ))
            });
        }
        Err(refusal(status, &stderr, memory_mib, cpu_seconds))
    }
}

/// Why a compile child that did not succeed refuses the component.
fn refusal(status: ExitStatus, stderr: &str, memory_mib: u64, cpu_seconds: u64) -> Failure {
    if status.code() == Some(i32::from(EXIT_INVALID)) {
        return Failure::invalid(format!("not a valid component: {stderr}"));
    }
    // Killed by RLIMIT_CPU (SIGXCPU/SIGKILL) or aborted on a failed allocation under
    // RLIMIT_AS: both are the component's doing, never retried.
    let tail = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    Failure::invalid(format!(
        "compiling the component exceeded the compiler's limits ({memory_mib} MiB of memory, \
         {cpu_seconds} s of CPU) and was stopped ({status}){tail}"
    ))
}

fn host_error(message: String) -> Failure {
    Failure::new(FailureClass::HostError, message)
}

/// CPU time of the child: a backstop behind the wall-clock kill (if the host itself dies
/// mid-compile), with room for Cranelift compiling on two threads.
fn cpu_seconds(timeout: Duration) -> u64 {
    timeout.as_secs().saturating_mul(2).saturating_add(1)
}

/// The compile's scratch files, removed however the compile ends.
struct Scratch {
    input: PathBuf,
    output: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in [&self.input, &self.output] {
            // Missing is fine: the output exists only after a successful compile.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The child's side (`mysimbdp __compile`): limits itself first, then compiles `input` with
/// the host's engine settings and writes the artifact to `output`. Exits with
/// [`EXIT_INVALID`] and the reason on stderr when wasmtime refuses the component.
pub fn run_child(
    input: &Path,
    output: &Path,
    engine: &str,
    memory_mib: u64,
    cpu_seconds: u64,
) -> Result<ExitCode> {
    let bytes = memory_mib.saturating_mul(1024 * 1024);
    rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes)
        .with_context(|| format!("limiting the compiler's address space to {memory_mib} MiB"))?;
    rlimit::setrlimit(rlimit::Resource::CPU, cpu_seconds, cpu_seconds)
        .with_context(|| format!("limiting the compiler's CPU time to {cpu_seconds} s"))?;
    let config: EngineConfig =
        serde_json::from_str(engine).context("reading the engine settings of --engine")?;
    let engine = engine::build_compiler(&config)?;
    let wasm = std::fs::read(input).with_context(|| format!("reading {input:?}"))?;
    match engine.precompile_component(&wasm) {
        Ok(artifact) => {
            std::fs::write(output, artifact).with_context(|| format!("writing {output:?}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{}", super::cache::root_cause(&error));
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
