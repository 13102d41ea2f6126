//! The `mysimbdp` command line: argument definitions and dispatch.

mod app;
pub mod new;
mod registry;

// The commands that only talk to the platform live in the client crate (which
// `mysimbdp-cli` is built from); this binary keeps them by delegating there.
use mysimbdp_client::{app as app_remote, batch, parse_param, stream, tenant};

use crate::config::{SandboxConfig, ServeConfig};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mysimbdp: a multi-tenant ingestion platform running tenants' WebAssembly apps.
#[derive(Debug, Parser)]
#[command(name = "mysimbdp", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform: the HTTP API, the batch workers and the stream consumers.
    #[command(after_help = crate::config::env_overrides_help())]
    Serve(ServeArgs),
    /// Manage tenants (operator).
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Tenant apps: check and run locally, or upload and manage them on the platform.
    #[command(subcommand)]
    App(AppCommand),
    /// Batch ingestion: upload files for a batch app, follow the jobs.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Stream ingestion: create streams for a stream app, publish messages, follow stats.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Service information in etcd: which coredms (daas, broker) serves which tenant.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Compile one component for the host that runs this (internal: the host runs itself
    /// with this command so a compile is bounded in time and memory, and killable).
    #[command(name = "__compile", hide = true)]
    Compile(CompileArgs),
}

/// Arguments of the hidden `__compile` command.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The component to compile.
    #[arg(long)]
    pub input: PathBuf,
    /// Where the compiled artifact goes.
    #[arg(long)]
    pub output: PathBuf,
    /// The host's `[sandbox.engine]` settings, as JSON.
    #[arg(long)]
    pub engine: String,
    /// Address-space limit, in MiB.
    #[arg(long)]
    pub memory_mib: u64,
    /// CPU-time limit, in seconds.
    #[arg(long)]
    pub cpu_seconds: u64,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The operator's configuration (TOML; see config/mysimbdp.example.toml). Defaults and
    /// the environment apply without it.
    #[arg(long, value_name = "FILE", env = "MYSIMBDP_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `mysimbdp app …`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Validate a component: is it a batch or a stream app, what does it import.
    Check(CheckArgs),
    /// Run an app on a local file in the production sandbox; documents go to stdout as JSON
    /// lines, a summary to stderr. No services needed.
    Run(RunArgs),
    /// Create a new app project (Rust, Python or JavaScript; batch or stream) that builds
    /// with one command and runs on its bundled sample input.
    New(new::NewArgs),
    /// Upload, list, activate, roll back, dry-run and delete apps on the platform.
    #[command(flatten)]
    Remote(app_remote::RemoteAppCommand),
}

/// Arguments of `app check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A representative input (a file for a batch app, messages one per line for a stream
    /// app): the check fails if the app fails on it, as an upload with this sample would.
    #[arg(long, value_name = "FILE")]
    pub sample: Option<PathBuf>,
    /// Sandbox settings.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Arguments of `app run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// The input: a file to ingest (batch app) or messages, one per line (stream app).
    #[arg(long)]
    pub input: PathBuf,
    /// An app parameter, `name=value`; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Content type handed to a batch app (default: from the file extension).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Messages per call of a stream app.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Tenant name used to derive document ids, as the platform would.
    #[arg(long, default_value = "local")]
    pub tenant: String,
    /// Print the summary as one JSON object on stderr instead of text.
    #[arg(long)]
    pub summary_json: bool,
    /// Sandbox settings and limit overrides.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Sandbox settings shared by the `app` commands: a config file and per-limit overrides.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The operator's configuration (TOML): its `[sandbox.*]` and `[apps]` tables apply, so
    /// an app runs here as it will on the platform; defaults apply without it.
    #[arg(long, value_name = "FILE", env = "MYSIMBDP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where compiled components are cached.
    #[arg(long, env = "MYSIMBDP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Run under this limit preset of the configuration (`rust`, `python`, `js`, or one the
    /// operator named), as an upload with `?preset=` would; the overrides below apply on top.
    #[arg(long)]
    pub preset: Option<String>,
    /// Fuel per call before input scaling.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Linear memory cap in MiB.
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Deadline per call in milliseconds before input scaling.
    #[arg(long)]
    pub deadline_ms: Option<u64>,
    /// Documents per emit call or stream outcome.
    #[arg(long)]
    pub max_documents_per_call: Option<usize>,
    /// Bytes per document.
    #[arg(long)]
    pub max_document_bytes: Option<usize>,
    /// Total output per call in MiB before input scaling.
    #[arg(long)]
    pub output_mib: Option<u64>,
    /// Host calls per call before input scaling.
    #[arg(long)]
    pub host_calls: Option<u64>,
}

impl SandboxArgs {
    /// The configuration file (or defaults) with the command line's overrides applied.
    pub fn config(&self) -> Result<SandboxConfig> {
        Ok(self.configs()?.0)
    }

    /// The sandbox configuration (as [`SandboxArgs::config`]) and the `[apps]` section
    /// (refused imports, probe budget), so `app check` admits exactly as an upload does.
    pub fn configs(&self) -> Result<(SandboxConfig, crate::config::AppsConfig)> {
        let (mut config, apps) = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
                let serve =
                    ServeConfig::from_toml(&text).with_context(|| format!("in {path:?}"))?;
                (serve.sandbox, serve.apps)
            }
            None => (
                SandboxConfig::default(),
                crate::config::AppsConfig::default(),
            ),
        };
        if let Some(dir) = &self.cache_dir {
            config.engine.cache_dir = Some(dir.clone());
        }
        if let Some(preset) = &self.preset {
            config.limits = config.preset(preset).map_err(anyhow::Error::msg)?;
        }
        let limits = &mut config.limits;
        let overrides = [
            (&mut limits.fuel, self.fuel),
            (&mut limits.memory_mib, self.memory_mib),
            (&mut limits.deadline_ms, self.deadline_ms),
            (&mut limits.output_mib, self.output_mib),
            (&mut limits.host_calls, self.host_calls),
        ];
        for (slot, value) in overrides {
            if let Some(value) = value {
                *slot = value;
            }
        }
        if let Some(value) = self.max_documents_per_call {
            limits.max_documents_per_call = value;
        }
        if let Some(value) = self.max_document_bytes {
            limits.max_document_bytes = value;
        }
        config.validate()?;
        Ok((config, apps))
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info), one line per record.
pub fn init_tracing() {
    crate::logging::init();
}

/// Runs a parsed command line and returns the process's exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    // The compile child needs no async runtime: it limits itself and compiles at once.
    if let Command::Compile(args) = &cli.command {
        return crate::runtime::compile::run_child(
            &args.input,
            &args.output,
            &args.engine,
            args.memory_mib,
            args.cpu_seconds,
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let config =
                    ServeConfig::load(args.config.as_deref()).context("invalid configuration")?;
                let address = config.listen_addr()?;
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("listening on {address}"))?;
                crate::serve::run(config, listener, crate::serve::shutdown_signal()).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Tenant(command) => {
                let schema = || {
                    serde_json::to_value(crate::profile::Profile::json_schema()).unwrap_or_default()
                };
                tenant::run(command, Some(&schema)).await
            }
            Command::Registry(command) => registry::run(command).await,
            Command::Batch(command) => batch::run(command).await,
            Command::Stream(command) => stream::run(command).await,
            Command::Compile(_) => anyhow::bail!("__compile runs before the async runtime"),
            Command::App(AppCommand::Check(args)) => app::check(args).await,
            Command::App(AppCommand::Run(args)) => app::run(args).await,
            Command::App(AppCommand::New(args)) => new::new(args),
            Command::App(AppCommand::Remote(command)) => app_remote::run(command).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
