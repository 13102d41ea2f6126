//! `mysimbdp tenant …`: the operator's side of the control plane, over the admin API.

use crate::client::{Client, OperatorApi, print_json, segment};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mysimbdp_api::{CreateTenant, ProfileVersionView, Suspend, TenantView, TenantWithToken};
use reqwest::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `mysimbdp tenant …`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its API token (shown this once).
    Create {
        /// The tenant id: 2-32 of a-z, 0-9 and '-', starting with a letter.
        id: String,
        /// Its profile, TOML or JSON (default: every default).
        #[arg(long, value_name = "FILE")]
        profile: Option<PathBuf>,
        /// The API and the operator's token.
        #[command(flatten)]
        api: OperatorApi,
    },
    /// List tenants.
    List {
        /// The API and the operator's token.
        #[command(flatten)]
        api: OperatorApi,
    },
    /// Show a tenant and its current profile.
    Show(TenantArgs),
    /// Suspend a tenant: its requests are refused and its work pauses.
    Suspend {
        /// The tenant id.
        id: String,
        /// Why; the tenant sees it in every refusal.
        #[arg(long)]
        reason: Option<String>,
        /// The API and the operator's token.
        #[command(flatten)]
        api: OperatorApi,
    },
    /// Resume a suspended tenant.
    Resume(TenantArgs),
    /// Delete a tenant with its profiles and apps (its documents' database is kept).
    Delete {
        /// The tenant id.
        id: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
        /// The API and the operator's token.
        #[command(flatten)]
        api: OperatorApi,
    },
    /// Issue a new token for a tenant; the old one stops working at once.
    RotateToken(TenantArgs),
    /// Tenant profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

/// A tenant id and the API.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenant id.
    pub id: String,
    /// The API and the operator's token.
    #[command(flatten)]
    pub api: OperatorApi,
}

/// `mysimbdp tenant profile …`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Set a tenant's profile from a TOML or JSON file: a new version, in effect on every
    /// host at once.
    Set {
        /// The tenant id.
        id: String,
        /// The profile.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The API and the operator's token.
        #[command(flatten)]
        api: OperatorApi,
    },
    /// List a tenant's profile versions, newest first.
    History(TenantArgs),
    /// Print the JSON Schema of profiles (also at /v1/schemas/tenant-profile.json).
    Schema,
}

/// Runs a `tenant` command. `profile_schema` gives the JSON Schema of profiles, which only
/// the host knows (the `mysimbdp` binary passes it; `mysimbdp-cli` has none).
pub async fn run(
    command: TenantCommand,
    profile_schema: Option<&dyn Fn() -> Value>,
) -> Result<ExitCode> {
    match command {
        TenantCommand::Create { id, profile, api } => create(id, profile, &api).await?,
        TenantCommand::List { api } => list(&api).await?,
        TenantCommand::Show(args) => show(&args).await?,
        TenantCommand::Suspend { id, reason, api } => suspend(&id, reason, &api).await?,
        TenantCommand::Resume(args) => resume(&args).await?,
        TenantCommand::Delete { id, yes, api } => delete(&id, yes, &api).await?,
        TenantCommand::RotateToken(args) => rotate_token(&args).await?,
        TenantCommand::Profile(ProfileCommand::Set { id, file, api }) => {
            set_profile(&id, &file, &api).await?
        }
        TenantCommand::Profile(ProfileCommand::History(args)) => profile_history(&args).await?,
        TenantCommand::Profile(ProfileCommand::Schema) => print_profile_schema(profile_schema)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenant create`: the token is printed once, since only its hash is stored.
async fn create(id: String, profile: Option<PathBuf>, api: &OperatorApi) -> Result<()> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let body = CreateTenant {
        id,
        profile: profile.map(|path| read_profile(&path)).transpose()?,
    };
    let created: TenantWithToken = client
        .send(
            client
                .request(Method::POST, "/v1/admin/tenants")
                .json(&body),
        )
        .await?;
    if api.json {
        return print_json(&created);
    }
    print_tenant(&created.tenant);
    println!("token:   {}", created.token);
    eprintln!(
        "\nThe token is shown only now; only its hash is stored. Give it to the \
         tenant (MYSIMBDP_TOKEN), or rotate it later with `mysimbdp tenant rotate-token`."
    );
    Ok(())
}

/// `tenant list`: a table, or the JSON array.
async fn list(api: &OperatorApi) -> Result<()> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let tenants: Vec<TenantView> = client
        .send(client.request(Method::GET, "/v1/admin/tenants"))
        .await?;
    if api.json {
        return print_json(&tenants);
    }
    println!(
        "{:<32} {:<10} {:>8}  {:<28} CREATED",
        "TENANT", "STATUS", "PROFILE", "DATABASE"
    );
    for t in &tenants {
        println!(
            "{:<32} {:<10} {:>8}  {:<28} {}",
            t.id,
            t.status.as_str(),
            format!("v{}", t.profile_version),
            t.database,
            t.created_at,
        );
    }
    Ok(())
}

/// `tenant show`: the tenant and its current profile as TOML.
async fn show(args: &TenantArgs) -> Result<()> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let tenant: TenantView = client
        .send(client.request(Method::GET, &tenant_path(&args.id, "")))
        .await?;
    if args.api.json {
        return print_json(&tenant);
    }
    print_tenant(&tenant);
    println!("profile:\n{}", indent(&toml_text(&tenant.profile)));
    Ok(())
}

/// `tenant suspend`
async fn suspend(id: &str, reason: Option<String>, api: &OperatorApi) -> Result<()> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let tenant: TenantView = client
        .send(
            client
                .request(Method::POST, &tenant_path(id, "/suspend"))
                .json(&Suspend { reason }),
        )
        .await?;
    report(api, &tenant, || println!("suspended {id}"))
}

/// `tenant resume`
async fn resume(args: &TenantArgs) -> Result<()> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let tenant: TenantView = client
        .send(client.request(Method::POST, &tenant_path(&args.id, "/resume")))
        .await?;
    report(&args.api, &tenant, || println!("resumed {}", args.id))
}

/// `tenant delete`: refused without `--yes`, since nothing it removes can be restored.
async fn delete(id: &str, yes: bool, api: &OperatorApi) -> Result<()> {
    if !yes {
        bail!(
            "deleting tenant {id:?} removes its profiles, apps and tokens for good: \
             add --yes to confirm"
        );
    }
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    client
        .send_empty(client.request(Method::DELETE, &tenant_path(id, "")))
        .await?;
    println!("deleted {id} (its database of documents is kept)");
    Ok(())
}

/// `tenant rotate-token`
async fn rotate_token(args: &TenantArgs) -> Result<()> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let rotated: TenantWithToken = client
        .send(client.request(Method::POST, &tenant_path(&args.id, "/token")))
        .await?;
    report(&args.api, &rotated, || {
        println!("token:   {}", rotated.token);
        eprintln!("\nThe old token no longer works. This one is shown only now.");
    })
}

/// `tenant profile set`: the file goes as it is, so the API reports its syntax errors.
async fn set_profile(id: &str, file: &Path, api: &OperatorApi) -> Result<()> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let text_body = std::fs::read_to_string(file).with_context(|| format!("reading {file:?}"))?;
    let content_type = if is_toml(file) {
        "application/toml"
    } else {
        "application/json"
    };
    let tenant: TenantView = client
        .send(
            client
                .request(Method::PUT, &tenant_path(id, "/profile"))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(text_body),
        )
        .await?;
    report(api, &tenant, || {
        println!("profile of {id} is now version {}", tenant.profile_version);
    })
}

/// `tenant profile history`
async fn profile_history(args: &TenantArgs) -> Result<()> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let versions: Vec<ProfileVersionView> = client
        .send(client.request(Method::GET, &tenant_path(&args.id, "/profile/versions")))
        .await?;
    if args.api.json {
        return print_json(&versions);
    }
    for v in &versions {
        println!("version {} set {}", v.version, v.created_at);
        println!("{}", indent(&toml_text(&v.profile)));
    }
    Ok(())
}

/// `tenant profile schema`
fn print_profile_schema(profile_schema: Option<&dyn Fn() -> Value>) -> Result<()> {
    let Some(schema) = profile_schema else {
        bail!(
            "this binary does not carry the profile schema: run `mysimbdp tenant profile \
             schema`, or GET /v1/schemas/tenant-profile.json from the API"
        );
    };
    print_json(&schema())
}

fn tenant_path(id: &str, rest: &str) -> String {
    format!("/v1/admin/tenants/{}{rest}", segment(id))
}

fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// A profile file as JSON: TOML is converted here, so its syntax errors come with lines.
fn read_profile(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    if is_toml(path) {
        toml::from_str(&text).with_context(|| format!("parsing {path:?} as TOML"))
    } else {
        serde_json::from_str(&text).with_context(|| format!("parsing {path:?} as JSON"))
    }
}

fn report(api: &OperatorApi, value: &impl serde::Serialize, human: impl FnOnce()) -> Result<()> {
    if api.json {
        print_json(value)?;
    } else {
        human();
    }
    Ok(())
}

fn print_tenant(t: &TenantView) {
    println!("tenant:  {}", t.id);
    let reason = t
        .suspended_reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!("status:  {}{reason}", t.status);
    println!("profile: version {}", t.profile_version);
    println!("database: {}", t.database);
    println!("created: {}", t.created_at);
}

fn toml_text(value: &Value) -> String {
    toml::to_string(value).unwrap_or_else(|_| value.to_string())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
