//! `mysimbdp registry …`: the operator publishes, lists, reads and removes tenants' service
//! information in etcd, where every host discovers it.

use crate::config::{DEFAULT_ETCD_ENDPOINT, DEFAULT_REGISTRY_PREFIX, RegistryConfig};
use crate::registry::{Registry, ServiceInfo, ServiceKind};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use mysimbdp_client::client::{print_json, text};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where etcd is.
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long = "etcd", env = "MYSIMBDP_ETCD_ENDPOINTS", default_value = DEFAULT_ETCD_ENDPOINT, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// The platform's key prefix.
    #[arg(long, env = "MYSIMBDP_REGISTRY_PREFIX", default_value = DEFAULT_REGISTRY_PREFIX)]
    pub prefix: String,
}

/// A service kind on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A core data service (MongoDB).
    Coredms,
    /// A data-as-a-service endpoint.
    Daas,
    /// A message broker.
    Broker,
}

impl From<Kind> for ServiceKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Coredms => Self::Coredms,
            Kind::Daas => Self::Daas,
            Kind::Broker => Self::Broker,
        }
    }
}

/// `mysimbdp registry …`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Publish (create or replace) service information from a JSON or TOML file; hosts use
    /// it for new work at once.
    Publish {
        /// The service information (schema: docs/service-info.schema.json).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Where etcd is.
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List published services.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<Kind>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Where etcd is.
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Print one entry as JSON.
    Get(EntryArgs),
    /// Remove one entry.
    Remove(EntryArgs),
    /// Print the JSON Schema of service information.
    Schema,
}

/// One entry.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The tenant.
    pub tenant: String,
    /// The kind.
    pub kind: Kind,
    /// The service id.
    pub id: String,
    /// Where etcd is.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

async fn connect(etcd: &EtcdArgs) -> Result<Registry> {
    Registry::connect(&RegistryConfig {
        etcd_endpoints: etcd.endpoints.clone(),
        prefix: etcd.prefix.clone(),
        ..RegistryConfig::default()
    })
    .await
}

/// Runs a `registry` command.
pub async fn run(command: RegistryCommand) -> Result<ExitCode> {
    match command {
        RegistryCommand::Publish { file, etcd } => {
            let text_body =
                std::fs::read_to_string(&file).with_context(|| format!("reading {file:?}"))?;
            let toml = file.extension().is_some_and(|e| e == "toml");
            let info = ServiceInfo::parse(&text_body, toml)
                .and_then(|info| info.validate().map(|()| info))
                .map_err(|e| anyhow::anyhow!("{} is refused: {e}", file.display()))?;
            let registry = connect(&etcd).await?;
            let key = registry.service_key(&info.tenant, info.kind, &info.id);
            let published = registry.publish(info).await?;
            println!(
                "published {} {} {} at {key} (updated {})",
                published.tenant,
                published.kind,
                published.id,
                published.updated_at.as_deref().unwrap_or("-")
            );
        }
        RegistryCommand::List {
            tenant,
            kind,
            json,
            etcd,
        } => {
            let registry = connect(&etcd).await?;
            let entries = registry
                .list(tenant.as_deref(), kind.map(Into::into))
                .await?;
            if json {
                print_json(&entries)?;
            } else {
                println!(
                    "{:<20} {:<8} {:<20} {:<12} {:<14} URI",
                    "TENANT", "KIND", "ID", "STATUS", "DATABASE"
                );
                for e in &entries {
                    println!(
                        "{:<20} {:<8} {:<20} {:<12} {:<14} {}",
                        e.tenant,
                        e.kind,
                        e.id,
                        text(&serde_json::to_value(e.status)?),
                        e.endpoints.database.as_deref().unwrap_or("-"),
                        e.endpoints.uri
                    );
                }
            }
        }
        RegistryCommand::Get(entry) => {
            let registry = connect(&entry.etcd).await?;
            match registry
                .get(&entry.tenant, entry.kind.into(), &entry.id)
                .await?
            {
                Some(info) => print_json(&info)?,
                None => bail!(
                    "no {} {:?} is published for tenant {:?}",
                    ServiceKind::from(entry.kind),
                    entry.id,
                    entry.tenant
                ),
            }
        }
        RegistryCommand::Remove(entry) => {
            let registry = connect(&entry.etcd).await?;
            let kind = ServiceKind::from(entry.kind);
            if !registry.remove(&entry.tenant, kind, &entry.id).await? {
                bail!(
                    "no {kind} {:?} is published for tenant {:?}",
                    entry.id,
                    entry.tenant
                );
            }
            println!("removed {} {kind} {}", entry.tenant, entry.id);
        }
        RegistryCommand::Schema => print_json(&ServiceInfo::json_schema())?,
    }
    Ok(ExitCode::SUCCESS)
}
