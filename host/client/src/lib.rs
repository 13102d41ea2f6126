//! The mysimbdp API client and every CLI command that only talks to the platform (over the
//! HTTP API, or to a stream's broker endpoint): tenants, remote apps, batch jobs, streams.
//! It links neither wasmtime nor MongoDB: `mysimbdp-cli` is this crate alone, and the
//! `mysimbdp` binary delegates these commands here.

/// `mysimbdp app upload|list|activate|rollback|dry-run|delete`.
pub mod app;
/// `mysimbdp batch …`.
pub mod batch;
/// The HTTP client: bearer auth, JSON in and out, the API's errors as one line.
pub mod client;
/// Figures as text: `stream stats` and `batch stats` without `--json`.
pub mod figures;
/// `mysimbdp stream …`, publishing included.
pub mod stream;
/// `mysimbdp tenant …` (operator).
pub mod tenant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code of a command whose app failed (any failure class: a dry run, a batch job, a
/// local run); 1 is a usage or host error, 2 a command-line error.
pub const EXIT_APP_FAILED: u8 = 3;

/// Parses an app parameter, `name=value`.
pub fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{raw:?} is not NAME=VALUE")),
    }
}

/// mysimbdp-cli: the platform's remote commands (apps are checked and run locally with
/// `mysimbdp app check|run`).
#[derive(Debug, Parser)]
#[command(name = "mysimbdp-cli", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands of `mysimbdp-cli`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage tenants (operator).
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Tenant apps on the platform: upload and manage them.
    #[command(subcommand)]
    App(app::RemoteAppCommand),
    /// Batch ingestion: upload files for a batch app, follow the jobs.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Stream ingestion: create streams for a stream app, publish messages, follow stats.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
}

/// Runs a parsed `mysimbdp-cli` command line and returns the process's exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Tenant(command) => tenant::run(command, None).await,
            Command::App(command) => app::run(command).await,
            Command::Batch(command) => batch::run(command).await,
            Command::Stream(command) => stream::run(command).await,
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
