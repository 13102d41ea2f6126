//! The sandbox section of the configuration: engine settings and per-call limits. Every value
//! has a named default; `validate` runs at startup and names the bad key and value. Tenant
//! profiles and apps override limits within the operator's ceilings (`[max]`).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Instructions (wasmtime fuel units) one call may burn before input scaling: ~1-2 s of work.
pub const DEFAULT_FUEL: u64 = 2_000_000_000;
/// Extra fuel per byte of input: the CSV sample app burns ~220 per byte, so this leaves
/// about 2x headroom for heavier transforms.
pub const DEFAULT_FUEL_PER_INPUT_BYTE: u64 = 500;
/// Wall-clock deadline of one call before input scaling.
pub const DEFAULT_DEADLINE_MS: u64 = 10_000;
/// Extra deadline per MiB of input: an app must sustain at least 4 MiB/s.
pub const DEFAULT_DEADLINE_MS_PER_INPUT_MIB: u64 = 250;
/// Linear memory cap of one app instance.
pub const DEFAULT_MEMORY_MIB: u64 = 64;
/// Elements across an instance's tables (function tables of large apps hold a few thousand).
pub const DEFAULT_TABLE_ELEMENTS: usize = 20_000;
/// Documents in one `emit` call (or one stream outcome).
pub const DEFAULT_MAX_DOCUMENTS_PER_CALL: usize = 10_000;
/// Bytes of one document's JSON; MongoDB's own cap is 16 MiB of BSON.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Total JSON bytes one call may emit, before input scaling.
pub const DEFAULT_OUTPUT_MIB: u64 = 256;
/// Extra output bytes allowed per input byte (JSON is wordier than CSV).
pub const DEFAULT_OUTPUT_BYTES_PER_INPUT_BYTE: u64 = 8;
/// Calls into the host (reads, emits, logs, params) per call, before input scaling.
pub const DEFAULT_HOST_CALLS: u64 = 100_000;
/// Extra host calls per MiB of input: an app must read in chunks of 256 bytes or more.
pub const DEFAULT_HOST_CALLS_PER_INPUT_MIB: u64 = 4096;
/// Log lines one call may write; the rest are counted and dropped.
pub const DEFAULT_LOG_LINES: u64 = 1000;
/// Bytes of stdout and of stderr kept per call (a panic message arrives on stderr).
pub const DEFAULT_STDIO_BYTES: usize = 64 * 1024;
/// Host resources (input file, WASI streams, …) an app may hold at once; an app needs a
/// handful, and each costs host memory.
pub const DEFAULT_RESOURCES: usize = 1000;

/// Instances running at once in one host process (the pooling allocator's size).
pub const DEFAULT_MAX_INSTANCES: u32 = 64;
/// The largest memory cap any tenant may be given; sizes the pooling allocator's slots.
pub const DEFAULT_MAX_MEMORY_MIB: u64 = 1024;
/// Core instances one component may create. A Rust component has about four; an interpreter
/// has many more (componentize-py with `--stub-wasi`: 38), hence 64.
pub const DEFAULT_CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Linear memories one component may create (Rust: 1; interpreters' adapters add a few).
pub const DEFAULT_MEMORIES_PER_COMPONENT: u32 = 4;
/// Tables one component may create (Rust: 2; interpreters: a handful).
pub const DEFAULT_TABLES_PER_COMPONENT: u32 = 16;
/// Core instances across the whole pool: what `max_instances` apps of 64 core instances use.
pub const DEFAULT_TOTAL_CORE_INSTANCES: u32 = DEFAULT_MAX_INSTANCES * 64;
/// Memories across the whole pool. Each reserves `max_memory_mib` of address space (not of
/// RAM), so this stays at two per app slot rather than growing with the per-component cap.
pub const DEFAULT_TOTAL_MEMORIES: u32 = DEFAULT_MAX_INSTANCES * 2;
/// Tables across the whole pool.
pub const DEFAULT_TOTAL_TABLES: u32 = DEFAULT_MAX_INSTANCES * 16;
/// How often the epoch ticks: the deadline's granularity and the async yield interval.
pub const DEFAULT_EPOCH_TICK_MS: u64 = 10;
/// Native stack wasm code may use; deep recursion ends with `stack-overflow`.
pub const DEFAULT_MAX_WASM_STACK_KIB: usize = 512;
/// Compiling one component may take this long before it is refused.
pub const DEFAULT_COMPILE_TIMEOUT_MS: u64 = 60_000;
/// The largest component accepted.
pub const DEFAULT_MAX_COMPONENT_MIB: u64 = 50;
/// Compiles running at once in one host process; more wait their turn. One keeps a hostile
/// upload from taking more than one core of a small host (Cranelift may use more threads for
/// one component with many functions, but a single huge function compiles on one).
pub const DEFAULT_MAX_CONCURRENT_COMPILES: usize = 1;
/// Address space of the compile child process (RLIMIT_AS), in MiB: the most one compile can
/// take from the host's memory.
pub const DEFAULT_COMPILE_MEMORY_MIB: u64 = 2048;

/// MiB to bytes, saturating rather than overflowing.
pub fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// Limits for one call into an app (one batch file, or one batch of stream messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Fuel (roughly, wasm instructions) per call, before input scaling.
    pub fuel: u64,
    /// Extra fuel per byte of input.
    pub fuel_per_input_byte: u64,
    /// Wall-clock deadline per call in milliseconds, before input scaling.
    pub deadline_ms: u64,
    /// Extra milliseconds of deadline per MiB of input.
    pub deadline_ms_per_input_mib: u64,
    /// Linear memory cap in MiB.
    pub memory_mib: u64,
    /// Cap on table elements (per table).
    pub table_elements: usize,
    /// Documents per `emit` call or per stream outcome.
    pub max_documents_per_call: usize,
    /// Bytes of one document's JSON.
    pub max_document_bytes: usize,
    /// Total JSON output per call in MiB, before input scaling.
    pub output_mib: u64,
    /// Extra output bytes per input byte.
    pub output_bytes_per_input_byte: u64,
    /// Calls into the host per call, before input scaling.
    pub host_calls: u64,
    /// Extra host calls per MiB of input.
    pub host_calls_per_input_mib: u64,
    /// Log lines kept per call.
    pub log_lines: u64,
    /// Bytes of stdout and of stderr kept per call.
    pub stdio_bytes: usize,
    /// Host resources an app may hold at once.
    pub resources: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            fuel_per_input_byte: DEFAULT_FUEL_PER_INPUT_BYTE,
            deadline_ms: DEFAULT_DEADLINE_MS,
            deadline_ms_per_input_mib: DEFAULT_DEADLINE_MS_PER_INPUT_MIB,
            memory_mib: DEFAULT_MEMORY_MIB,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            max_documents_per_call: DEFAULT_MAX_DOCUMENTS_PER_CALL,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            output_mib: DEFAULT_OUTPUT_MIB,
            output_bytes_per_input_byte: DEFAULT_OUTPUT_BYTES_PER_INPUT_BYTE,
            host_calls: DEFAULT_HOST_CALLS,
            host_calls_per_input_mib: DEFAULT_HOST_CALLS_PER_INPUT_MIB,
            log_lines: DEFAULT_LOG_LINES,
            stdio_bytes: DEFAULT_STDIO_BYTES,
            resources: DEFAULT_RESOURCES,
        }
    }
}

/// What one call may spend, once the limits are scaled to the size of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Fuel for the call.
    pub fuel: u64,
    /// Wall-clock time for the call.
    pub deadline: Duration,
    /// JSON bytes the call may emit.
    pub output_bytes: u64,
    /// Calls into the host.
    pub host_calls: u64,
}

impl SandboxLimits {
    /// The budget of a call whose input is `input_bytes` long.
    pub fn budget(&self, input_bytes: u64) -> Budget {
        let mib = input_bytes.div_ceil(1024 * 1024);
        Budget {
            fuel: self
                .fuel
                .saturating_add(self.fuel_per_input_byte.saturating_mul(input_bytes)),
            deadline: Duration::from_millis(
                self.deadline_ms
                    .saturating_add(self.deadline_ms_per_input_mib.saturating_mul(mib)),
            ),
            output_bytes: (self.output_mib.saturating_mul(1024 * 1024))
                .saturating_add(self.output_bytes_per_input_byte.saturating_mul(input_bytes)),
            host_calls: self
                .host_calls
                .saturating_add(self.host_calls_per_input_mib.saturating_mul(mib)),
        }
    }

    /// Linear memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        mib_to_bytes(self.memory_mib)
    }

    /// Refuses limits that are zero where that makes no sense, or above the engine's maxima.
    pub fn validate(&self, engine: &EngineConfig) -> Result<()> {
        let positive = [
            ("fuel", self.fuel),
            ("deadline_ms", self.deadline_ms),
            ("memory_mib", self.memory_mib),
            ("table_elements", self.table_elements as u64),
            ("max_documents_per_call", self.max_documents_per_call as u64),
            ("max_document_bytes", self.max_document_bytes as u64),
            ("output_mib", self.output_mib),
            ("host_calls", self.host_calls),
            ("resources", self.resources as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                bail!("sandbox limit {key} = 0: it must be at least 1");
            }
        }
        if self.memory_mib > engine.max_memory_mib {
            bail!(
                "sandbox limit memory_mib = {} is above the engine's max_memory_mib = {}",
                self.memory_mib,
                engine.max_memory_mib
            );
        }
        Ok(())
    }
}

/// Settings of the one wasmtime engine a host process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// App instances alive at once (pooling allocator slots).
    pub max_instances: u32,
    /// Largest memory cap any app may get, in MiB.
    pub max_memory_mib: u64,
    /// Core instances one component may create (pooling allocator and per-Store limit).
    pub core_instances_per_component: u32,
    /// Linear memories one component may create.
    pub memories_per_component: u32,
    /// Tables one component may create.
    pub tables_per_component: u32,
    /// Core instances across all running apps (pooling allocator slots).
    pub total_core_instances: u32,
    /// Linear memories across all running apps; each slot reserves `max_memory_mib` of
    /// address space.
    pub total_memories: u32,
    /// Tables across all running apps.
    pub total_tables: u32,
    /// Epoch tick in milliseconds.
    pub epoch_tick_ms: u64,
    /// Native wasm stack in KiB.
    pub max_wasm_stack_kib: usize,
    /// Compile timeout per component in milliseconds.
    pub compile_timeout_ms: u64,
    /// Largest component accepted, in MiB.
    pub max_component_mib: u64,
    /// Compiles running at once; further uploads (and first loads) wait for a slot.
    pub max_concurrent_compiles: usize,
    /// Address-space limit of the compile child process, in MiB.
    pub compile_memory_mib: u64,
    /// The `mysimbdp` executable that compiles components in a child process (its hidden
    /// `__compile` command); default: the running executable.
    pub compiler: Option<PathBuf>,
    /// Where compiled components are cached (default: `$XDG_CACHE_HOME/mysimbdp` or
    /// `~/.cache/mysimbdp`).
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_mib: DEFAULT_MAX_MEMORY_MIB,
            core_instances_per_component: DEFAULT_CORE_INSTANCES_PER_COMPONENT,
            memories_per_component: DEFAULT_MEMORIES_PER_COMPONENT,
            tables_per_component: DEFAULT_TABLES_PER_COMPONENT,
            total_core_instances: DEFAULT_TOTAL_CORE_INSTANCES,
            total_memories: DEFAULT_TOTAL_MEMORIES,
            total_tables: DEFAULT_TOTAL_TABLES,
            epoch_tick_ms: DEFAULT_EPOCH_TICK_MS,
            max_wasm_stack_kib: DEFAULT_MAX_WASM_STACK_KIB,
            compile_timeout_ms: DEFAULT_COMPILE_TIMEOUT_MS,
            max_component_mib: DEFAULT_MAX_COMPONENT_MIB,
            max_concurrent_compiles: DEFAULT_MAX_CONCURRENT_COMPILES,
            compile_memory_mib: DEFAULT_COMPILE_MEMORY_MIB,
            compiler: None,
            cache_dir: None,
        }
    }
}

impl EngineConfig {
    /// Refuses settings the engine cannot run with.
    pub fn validate(&self) -> Result<()> {
        if self.max_instances == 0 {
            bail!("engine max_instances = 0: it must be at least 1");
        }
        // Per component: at least one of each (a component needs a memory to hold its
        // data); at most 1,000, far above any toolchain's output, so a typo cannot reserve
        // the pool away. Totals: room for at least one component of the per-component size,
        // at most 100,000 (each memory slot reserves `max_memory_mib` of address space).
        let counts = [
            (
                "core_instances_per_component",
                self.core_instances_per_component,
                "total_core_instances",
                self.total_core_instances,
            ),
            (
                "memories_per_component",
                self.memories_per_component,
                "total_memories",
                self.total_memories,
            ),
            (
                "tables_per_component",
                self.tables_per_component,
                "total_tables",
                self.total_tables,
            ),
        ];
        for (key, per_component, total_key, total) in counts {
            if !(1..=1000).contains(&per_component) {
                bail!("engine {key} = {per_component}: it must be 1..=1000");
            }
            if !(per_component..=100_000).contains(&total) {
                bail!(
                    "engine {total_key} = {total}: it must be between {key} ({per_component}) \
                     and 100000"
                );
            }
        }
        if !(1..=1000).contains(&self.epoch_tick_ms) {
            bail!(
                "engine epoch_tick_ms = {}: it must be 1..=1000",
                self.epoch_tick_ms
            );
        }
        if !(1..=65536).contains(&self.max_memory_mib) {
            bail!(
                "engine max_memory_mib = {}: it must be 1..=65536",
                self.max_memory_mib
            );
        }
        if !(64..=16384).contains(&self.max_wasm_stack_kib) {
            bail!(
                "engine max_wasm_stack_kib = {}: it must be 64..=16384",
                self.max_wasm_stack_kib
            );
        }
        if self.compile_timeout_ms == 0 || self.max_component_mib == 0 {
            bail!("engine compile_timeout_ms and max_component_mib must be at least 1");
        }
        if !(1..=64).contains(&self.max_concurrent_compiles) {
            bail!(
                "engine max_concurrent_compiles = {}: it must be 1..=64",
                self.max_concurrent_compiles
            );
        }
        // Below ~256 MiB the compiler's own threads and heap cannot even start.
        if !(256..=65536).contains(&self.compile_memory_mib) {
            bail!(
                "engine compile_memory_mib = {}: it must be 256..=65536",
                self.compile_memory_mib
            );
        }
        Ok(())
    }

    /// The executable that compiles components: the configured one, else this process's own.
    pub fn compiler(&self) -> Result<PathBuf> {
        match &self.compiler {
            Some(path) => Ok(path.clone()),
            None => std::env::current_exe()
                .context("finding this executable to run the component compiler"),
        }
    }

    /// The cache directory, resolved from the environment when not set.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("mysimbdp")
    }
}

/// Declares [`SandboxOverrides`] from a list of `SandboxLimits` fields, so the partial form
/// (what tenant profiles, apps and operator ceilings write) can never drift from the full one.
macro_rules! sandbox_overrides {
    ($($(#[$doc:meta])* $field:ident: $ty:ty,)*) => {
        /// Some sandbox limits, each optional: a tenant profile's or an app's limits, or the
        /// operator's ceilings, applied over a full set of [`SandboxLimits`]. Every limit is
        /// "bigger is more permissive", which is what makes [`SandboxOverrides::exceeding`]
        /// meaningful.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct SandboxOverrides {
            $($(#[$doc])* #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>,)*
        }

        impl SandboxOverrides {
            /// `base` with these values put in.
            pub fn apply(&self, base: &SandboxLimits) -> SandboxLimits {
                let mut limits = base.clone();
                $(if let Some(value) = self.$field { limits.$field = value; })*
                limits
            }

            /// The first limit set here above `ceiling`'s: `(key, value, ceiling)`.
            pub fn exceeding(&self, ceiling: &SandboxLimits) -> Option<(&'static str, u64, u64)> {
                $(if let Some(value) = self.$field {
                    if value > ceiling.$field {
                        return Some((stringify!($field), value as u64, ceiling.$field as u64));
                    }
                })*
                None
            }

            /// Whether nothing is set.
            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_none())*
            }
        }

        impl SandboxLimits {
            /// The first limit above `ceiling`'s: `(key, value, ceiling)`.
            pub fn exceeding(&self, ceiling: &SandboxLimits) -> Option<(&'static str, u64, u64)> {
                $(if self.$field > ceiling.$field {
                    return Some((stringify!($field), self.$field as u64, ceiling.$field as u64));
                })*
                None
            }
        }
    };
}

sandbox_overrides! {
    /// Fuel per call before input scaling.
    fuel: u64,
    /// Extra fuel per input byte.
    fuel_per_input_byte: u64,
    /// Deadline per call in ms before input scaling.
    deadline_ms: u64,
    /// Extra deadline ms per MiB of input.
    deadline_ms_per_input_mib: u64,
    /// Linear memory cap in MiB.
    memory_mib: u64,
    /// Table elements cap.
    table_elements: usize,
    /// Documents per emit call or stream outcome.
    max_documents_per_call: usize,
    /// Bytes of one document's JSON.
    max_document_bytes: usize,
    /// Total output per call in MiB before input scaling.
    output_mib: u64,
    /// Extra output bytes per input byte.
    output_bytes_per_input_byte: u64,
    /// Host calls per call before input scaling.
    host_calls: u64,
    /// Extra host calls per MiB of input.
    host_calls_per_input_mib: u64,
    /// Log lines kept per call.
    log_lines: u64,
    /// Bytes of stdout and of stderr kept per call.
    stdio_bytes: usize,
    /// Host resources held at once.
    resources: usize,
}

/// Extra fuel per input byte of the `python` preset: the Python CSV sample (componentize-py,
/// the project's SDK) was measured at ~4,360 per byte of the orders CSV (docs/apps-python.md);
/// this leaves about 2x headroom.
pub const PYTHON_FUEL_PER_INPUT_BYTE: u64 = 10_000;
/// Extra fuel per input byte of the `js` preset: the JS CSV sample (componentize-js) was
/// measured at ~21,060 per byte (docs/apps-js.md); about 2x headroom.
pub const JS_FUEL_PER_INPUT_BYTE: u64 = 45_000;
/// Fuel per call before input scaling of the interpreter presets: an interpreter's start-up
/// and per-message overhead is far above Rust's.
pub const INTERPRETER_FUEL: u64 = 4_000_000_000;
/// Deadline per MiB of input of the `python` preset: the app must sustain 0.5 MiB/s.
pub const PYTHON_DEADLINE_MS_PER_INPUT_MIB: u64 = 2_000;
/// Deadline per MiB of input of the `js` preset: the app must sustain 0.25 MiB/s.
pub const JS_DEADLINE_MS_PER_INPUT_MIB: u64 = 4_000;
/// Memory cap of the `python` preset: the interpreter's heap comes on top of the app's data.
pub const PYTHON_MEMORY_MIB: u64 = 256;
/// Memory cap of the `js` preset: componentize-js leaked ~250 B of linear memory per emitted
/// record, which put a 64 MiB CSV near 512 MiB.
pub const JS_MEMORY_MIB: u64 = 512;

/// The presets a configuration offers when it names none: `rust` (the defaults), `python`
/// and `js`, with the figures above.
pub fn builtin_presets() -> BTreeMap<String, SandboxOverrides> {
    BTreeMap::from([
        ("rust".to_owned(), SandboxOverrides::default()),
        (
            "python".to_owned(),
            SandboxOverrides {
                fuel: Some(INTERPRETER_FUEL),
                fuel_per_input_byte: Some(PYTHON_FUEL_PER_INPUT_BYTE),
                deadline_ms_per_input_mib: Some(PYTHON_DEADLINE_MS_PER_INPUT_MIB),
                memory_mib: Some(PYTHON_MEMORY_MIB),
                ..SandboxOverrides::default()
            },
        ),
        (
            "js".to_owned(),
            SandboxOverrides {
                fuel: Some(INTERPRETER_FUEL),
                fuel_per_input_byte: Some(JS_FUEL_PER_INPUT_BYTE),
                deadline_ms_per_input_mib: Some(JS_DEADLINE_MS_PER_INPUT_MIB),
                memory_mib: Some(JS_MEMORY_MIB),
                ..SandboxOverrides::default()
            },
        ),
    ])
}

/// The operator's ceilings when the configuration names none: exactly what the built-in
/// presets need, so each of them is admitted, and nothing more.
pub fn builtin_max() -> SandboxOverrides {
    SandboxOverrides {
        fuel: Some(INTERPRETER_FUEL),
        fuel_per_input_byte: Some(JS_FUEL_PER_INPUT_BYTE),
        deadline_ms_per_input_mib: Some(JS_DEADLINE_MS_PER_INPUT_MIB),
        memory_mib: Some(JS_MEMORY_MIB),
        ..SandboxOverrides::default()
    }
}

/// The sandbox section of the operator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Engine-wide settings.
    pub engine: EngineConfig,
    /// Default limits of every app call; tenant profiles and apps may lower them.
    pub limits: SandboxLimits,
    /// How far a tenant profile or a preset may raise a limit above its default
    /// (`[sandbox.max]`); a limit not named here cannot be raised at all. Default: what the
    /// built-in presets need.
    pub max: SandboxOverrides,
    /// Limit presets a tenant may choose per app version at upload (`[sandbox.presets.NAME]`),
    /// each a set of limits over `limits`. Naming any replaces the built-in `rust`, `python`
    /// and `js`: the presets offered are exactly those named. A preset above `max` is
    /// refused at upload, with the key that exceeds.
    pub presets: BTreeMap<String, SandboxOverrides>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            limits: SandboxLimits::default(),
            max: builtin_max(),
            presets: builtin_presets(),
        }
    }
}

impl SandboxConfig {
    /// Parses a TOML document, refusing unknown keys, and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Validates the engine settings, the default limits against them, and the ceilings
    /// against the defaults.
    pub fn validate(&self) -> Result<()> {
        self.engine.validate()?;
        self.limits.validate(&self.engine)?;
        let ceiling = self.ceiling();
        ceiling
            .validate(&self.engine)
            .context("in the sandbox maxima ([max])")?;
        if let Some((key, default, max)) = self.limits.exceeding(&ceiling) {
            bail!("sandbox max.{key} = {max} is below the default limits.{key} = {default}");
        }
        for (name, preset) in &self.presets {
            crate::names::preset_name(name)
                .with_context(|| format!("sandbox preset name {name:?}"))?;
            preset
                .apply(&self.limits)
                .validate(&self.engine)
                .with_context(|| format!("in sandbox preset {name:?} ([presets.{name}])"))?;
        }
        Ok(())
    }

    /// The most any tenant or app may be given: the defaults raised by `max`.
    pub fn ceiling(&self) -> SandboxLimits {
        self.max.apply(&self.limits)
    }

    /// The limits a preset stands for (its values over the defaults), once checked against
    /// the operator's ceiling: refused, with the reason, when the preset is not offered or
    /// one of its values is above `max`.
    pub fn preset(&self, name: &str) -> Result<SandboxLimits, String> {
        let Some(preset) = self.presets.get(name) else {
            let offered: Vec<&str> = self.presets.keys().map(String::as_str).collect();
            return Err(format!(
                "preset {name:?} is not offered by this platform (offered: {})",
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            ));
        };
        if let Some((key, value, max)) = preset.exceeding(&self.ceiling()) {
            return Err(format!(
                "preset {name:?} sets {key} = {value}, above the operator's ceiling of {max} \
                 (sandbox.max.{key})"
            ));
        }
        Ok(preset.apply(&self.limits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        SandboxConfig::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = SandboxConfig::from_toml("[limits]\nfuel = 5\nfuell = 6\n").unwrap_err();
        assert!(error.to_string().contains("fuell"), "{error}");
    }

    #[test]
    fn memory_above_the_engine_maximum_is_refused() {
        let error =
            SandboxConfig::from_toml("[engine]\nmax_memory_mib = 64\n[limits]\nmemory_mib = 128\n")
                .unwrap_err();
        assert!(error.to_string().contains("memory_mib = 128"), "{error}");
    }

    #[test]
    fn overrides_apply_and_are_held_under_the_ceiling() {
        let config =
            SandboxConfig::from_toml("[limits]\nfuel = 100\n[max]\nfuel = 1000\n").unwrap();
        let ceiling = config.ceiling();
        assert_eq!(
            (ceiling.fuel, ceiling.memory_mib),
            (1000, DEFAULT_MEMORY_MIB)
        );
        let within = SandboxOverrides {
            fuel: Some(1000),
            memory_mib: Some(8),
            ..Default::default()
        };
        assert_eq!(within.exceeding(&ceiling), None);
        assert_eq!(within.apply(&config.limits).memory_mib, 8);
        let above = SandboxOverrides {
            memory_mib: Some(DEFAULT_MEMORY_MIB + 1),
            ..Default::default()
        };
        assert_eq!(
            above.exceeding(&ceiling),
            Some(("memory_mib", DEFAULT_MEMORY_MIB + 1, DEFAULT_MEMORY_MIB))
        );
    }

    #[test]
    fn a_ceiling_below_the_default_is_refused() {
        let error = SandboxConfig::from_toml("[max]\nfuel = 5\n").unwrap_err();
        assert!(error.to_string().contains("max.fuel = 5"), "{error}");
    }

    #[test]
    fn builtin_presets_fit_the_builtin_ceiling_and_a_64_mib_csv() {
        let config = SandboxConfig::default();
        let rust = config.preset("rust").unwrap();
        assert_eq!(rust, config.limits);
        let mib64 = 64 * 1024 * 1024;
        for (name, per_byte) in [("python", 4_360u64), ("js", 21_060)] {
            let limits = config.preset(name).unwrap();
            assert!(limits.fuel_per_input_byte >= 2 * per_byte, "{name}");
            // The measured cost of a 64 MiB CSV fits the budget, with the base fuel to spare.
            assert!(
                limits.budget(mib64).fuel >= per_byte * mib64 + DEFAULT_FUEL,
                "{name}"
            );
        }
        let error = config.preset("cobol").unwrap_err();
        assert!(error.contains("offered: js, python, rust"), "{error}");
    }

    #[test]
    fn a_preset_above_the_ceiling_is_refused_with_its_key() {
        let config = SandboxConfig::from_toml(
            "[max]\nfuel_per_input_byte = 1000\n\
             [presets.heavy]\nfuel_per_input_byte = 5000\n\
             [presets.light]\nmemory_mib = 16\n",
        )
        .unwrap();
        let error = config.preset("heavy").unwrap_err();
        assert!(
            error.contains("fuel_per_input_byte = 5000") && error.contains("ceiling of 1000"),
            "{error}"
        );
        assert_eq!(config.preset("light").unwrap().memory_mib, 16);
        assert!(
            config.preset("python").is_err(),
            "naming presets replaces the built-in ones"
        );
    }

    #[test]
    fn presets_are_validated_at_startup() {
        let error = SandboxConfig::from_toml("[presets.big]\nmemory_mib = 100000\n").unwrap_err();
        assert!(format!("{error:#}").contains("preset \"big\""), "{error:#}");
        let error = SandboxConfig::from_toml("[presets.\"Bad Name\"]\n").unwrap_err();
        assert!(format!("{error:#}").contains("Bad Name"), "{error:#}");
    }

    #[test]
    fn pool_counts_are_validated() {
        let error =
            SandboxConfig::from_toml("[engine]\ncore_instances_per_component = 0\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("core_instances_per_component = 0"),
            "{error}"
        );
        let error =
            SandboxConfig::from_toml("[engine]\nmemories_per_component = 8\ntotal_memories = 4\n")
                .unwrap_err();
        assert!(error.to_string().contains("total_memories = 4"), "{error}");
        let config =
            SandboxConfig::from_toml("[engine]\ncore_instances_per_component = 40\n").unwrap();
        assert_eq!(config.engine.core_instances_per_component, 40);
    }

    #[test]
    fn budget_scales_with_input() {
        let limits = SandboxLimits::default();
        let small = limits.budget(0);
        let large = limits.budget(1 << 30);
        assert_eq!(small.fuel, DEFAULT_FUEL);
        assert_eq!(
            large.fuel,
            DEFAULT_FUEL + DEFAULT_FUEL_PER_INPUT_BYTE * (1 << 30)
        );
        assert_eq!(
            large.deadline,
            Duration::from_millis(DEFAULT_DEADLINE_MS + 250 * 1024)
        );
        assert!(large.host_calls > small.host_calls);
    }
}
