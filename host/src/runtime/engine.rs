//! The one wasmtime `Engine` of a host process, and the thread that ticks its epoch.

use crate::config::{EngineConfig, mib_to_bytes};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Room on each fiber stack for host frames below the guest's own stack.
const HOST_STACK_BYTES: usize = 1024 * 1024;

/// Builds the engine: Cranelift, pooling allocator, component model, fuel and epochs on;
/// proposals a tenant app does not need are off to shrink the attack surface. Threads, GC,
/// exceptions and component-model async are not even compiled in (see the workspace's
/// wasmtime features); the rest are switched off here.
pub(crate) fn build(config: &EngineConfig) -> Result<Engine> {
    let mut wasm = compilation_config(config);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(config)));
    Engine::new(&wasm)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")
}

/// The engine of the compile child: the host's compilation settings with the on-demand
/// allocator, because the pool reserves far more address space than the child's RLIMIT_AS
/// allows, and the child never instantiates. The allocator is not part of what wasmtime
/// checks when the host deserializes the artifact; every setting that is, is shared through
/// [`compilation_config`].
pub(crate) fn build_compiler(config: &EngineConfig) -> Result<Engine> {
    Engine::new(&compilation_config(config))
        .map_err(anyhow::Error::from)
        .context("creating the compiler's wasmtime engine")
}

/// The pooling allocator's sizes, all from the configuration (validated at startup): a
/// component needing more core instances, memories or tables than configured fails to
/// instantiate, which admission's probe turns into a refused upload.
fn pool(config: &EngineConfig) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(config.max_instances)
        .total_core_instances(config.total_core_instances)
        .total_memories(config.total_memories)
        .total_tables(config.total_tables)
        .total_stacks(config.max_instances)
        .max_core_instances_per_component(config.core_instances_per_component)
        .max_memories_per_component(config.memories_per_component)
        .max_tables_per_component(config.tables_per_component)
        .max_memory_size(mib_to_bytes(config.max_memory_mib));
    pool
}

/// Every setting that shapes compiled code; one function so the host and the compile child
/// can never disagree.
fn compilation_config(config: &EngineConfig) -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack_kib * 1024)
        // Calls run on fiber stacks, which must hold the wasm stack plus the host's frames.
        .async_stack_size(config.max_wasm_stack_kib * 1024 + HOST_STACK_BYTES)
        .wasm_stack_switching(false)
        .wasm_memory64(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false);
    wasm
}

/// Ticks the engine's epoch while alive; the ticks drive every Store's deadline check and
/// async yield. Dropping it stops the thread.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mysimbdp-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread wakes within one tick; a panic there has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
