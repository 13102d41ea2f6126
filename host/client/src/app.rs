//! `mysimbdp app upload|list|activate|rollback|dry-run|delete`: a tenant's apps on the platform,
//! over the API, with a progress bar for uploads.

use crate::client::{Client, TenantApi, or_dash, print_json, segment};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use mysimbdp_api::{Activate, AppView, DryRunRequest, DryRunView, Uploaded, VersionView};
use reqwest::Method;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `mysimbdp app …` on the platform (the host's `app` command adds `check` and `run`).
#[derive(Debug, Subcommand)]
pub enum RemoteAppCommand {
    /// Upload a component as a new version of an app on the platform.
    Upload(UploadArgs),
    /// List your apps on the platform, or one app's versions.
    List(ListArgs),
    /// Make a version of an app the active one.
    Activate(ActivateArgs),
    /// Re-activate the version that was active before the current one.
    Rollback(NameArgs),
    /// Run an app on the platform on a small input and print its documents; nothing is
    /// written.
    DryRun(DryRunArgs),
    /// Delete an app and all its versions from the platform.
    Delete {
        /// The app and the API.
        #[command(flatten)]
        app: NameArgs,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs an `app` command on the platform.
pub async fn run(command: RemoteAppCommand) -> Result<ExitCode> {
    match command {
        RemoteAppCommand::Upload(args) => upload(args).await,
        RemoteAppCommand::List(args) => list(args).await,
        RemoteAppCommand::Activate(args) => activate(args).await,
        RemoteAppCommand::Rollback(args) => rollback(args).await,
        RemoteAppCommand::DryRun(args) => dry_run(args).await,
        RemoteAppCommand::Delete { app, yes } => delete(app, yes).await,
    }
}

/// Arguments of `app upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The app's name (created on first upload).
    pub name: String,
    /// The component (.wasm).
    pub file: PathBuf,
    /// Store the version without making it active.
    #[arg(long)]
    pub no_activate: bool,
    /// The limit preset the version runs under (`rust`, `python`, `js`, or one the operator
    /// offers); default: the operator's default limits.
    #[arg(long)]
    pub preset: Option<String>,
    /// A representative input (a file for a batch app, messages one per line for a stream
    /// app): the upload is refused if the app fails on it under the limits it will run with.
    #[arg(long, value_name = "FILE")]
    pub sample: Option<PathBuf>,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// Arguments of `app list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// An app: list its versions instead of the apps.
    pub name: Option<String>,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// Arguments of `app activate`.
#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The app.
    pub name: String,
    /// The version id, or a unique prefix of 8+ hex digits.
    #[arg(value_name = "VERSION")]
    pub version_id: String,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// Arguments of `app rollback` and `app delete`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The app.
    pub name: String,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// Arguments of `app dry-run`.
#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// The app.
    pub name: String,
    /// A small input: a file's text (batch app) or messages, one per line (stream app).
    #[arg(long)]
    pub input: PathBuf,
    /// An app parameter, `name=value`; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
    pub params: Vec<(String, String)>,
    /// The version to run (default: the active one).
    #[arg(long = "app-version", value_name = "VERSION")]
    pub version_id: Option<String>,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// `app dry-run`: runs the app on the platform on a small input; nothing is written.
pub async fn dry_run(args: DryRunArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let input = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {:?} (a dry run takes UTF-8 text)", args.input))?;
    let request = DryRunRequest {
        input,
        params: args.params.into_iter().collect(),
        version: args.version_id,
    };
    let run: DryRunView = client
        .send(
            client
                .request(
                    Method::POST,
                    &format!("/v1/apps/{}/dry-run", segment(&args.name)),
                )
                .json(&request),
        )
        .await?;
    if args.api.json {
        print_json(&run)?;
    } else {
        let mut stdout = std::io::stdout().lock();
        for document in &run.documents {
            // A closed pipe (`| head`) just means the reader has seen enough.
            if let Err(e) = writeln!(stdout, "{document}") {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(e).context("writing to stdout");
            }
        }
        drop(stdout);
        let shown = run.documents.len();
        eprintln!(
            "version {}: {} documents ({shown} shown), fuel {}, {:.1} ms",
            short(&run.version),
            run.documents_total,
            run.usage.fuel,
            run.usage.duration_ms
        );
        if let Some(quality) = &run.quality {
            eprintln!("quality: {quality}");
        }
        if let Some(failure) = &run.failure {
            eprintln!("failed: {}: {}", failure.class, failure.message);
            return Ok(ExitCode::from(crate::EXIT_APP_FAILED));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `app upload`: streams the component with a progress bar, then waits for admission.
pub async fn upload(args: UploadArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("opening {:?}", args.file))?;
    let size = file
        .metadata()
        .await
        .with_context(|| format!("reading the size of {:?}", args.file))?
        .len();
    let bar = upload_bar(size, &args.name);
    let result = send_component(&client, &args, file, size, &bar).await;
    bar.finish_and_clear();
    let uploaded =
        result.with_context(|| format!("uploading {:?} as app {:?}", args.file, args.name))?;
    if args.api.json {
        print_json(&uploaded)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_uploaded(&args.name, &uploaded);
    Ok(ExitCode::SUCCESS)
}

/// A bar over the component's bytes; its message says what the upload is doing.
fn upload_bar(size: u64, name: &str) -> ProgressBar {
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:32}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("uploading {name}"));
    bar
}

/// PUTs the component as a stream and waits for the host's answer. Once every byte is sent
/// the bar turns into a spinner, since admission (checking, compiling, probing) takes a
/// while and moves no bytes.
async fn send_component(
    client: &Client,
    args: &UploadArgs,
    file: tokio::fs::File,
    size: u64,
    bar: &ProgressBar,
) -> Result<Uploaded> {
    let counted = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counted.inc(chunk.len() as u64);
        }
    });
    let mut path = format!(
        "/v1/apps/{}?activate={}",
        segment(&args.name),
        !args.no_activate
    );
    if let Some(preset) = &args.preset {
        path.push_str(&format!("&preset={}", segment(preset)));
    }
    let request = client.request(Method::PUT, &path);
    let request = match &args.sample {
        // With a sample the body is a form: the component (streamed) and the sample.
        Some(sample_path) => {
            let sample = tokio::fs::read(sample_path)
                .await
                .with_context(|| format!("reading the sample {sample_path:?}"))?;
            let form = reqwest::multipart::Form::new()
                .part(
                    "component",
                    reqwest::multipart::Part::stream_with_length(
                        reqwest::Body::wrap_stream(stream),
                        size,
                    )
                    .file_name("component.wasm"),
                )
                .part(
                    "sample",
                    reqwest::multipart::Part::bytes(sample).file_name("sample"),
                );
            request.multipart(form)
        }
        None => request
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream)),
    };
    let admitting = bar.clone();
    let waiting = tokio::spawn(async move {
        // Once the bytes are sent the host validates, compiles and probes the app.
        while admitting.position() < size {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admitting.set_message("checking, compiling, probing");
        admitting.enable_steady_tick(Duration::from_millis(120));
    });
    let result = client.send(request).await;
    waiting.abort();
    result
}

/// The version uploaded, and which is active (with how to activate it when it is not).
fn print_uploaded(name: &str, uploaded: &Uploaded) {
    let version = &uploaded.version;
    let verb = if uploaded.created {
        "uploaded"
    } else {
        "already had"
    };
    println!(
        "{verb} {name} {} app version {} ({} bytes{})",
        version.kind,
        version.version,
        version.size,
        version
            .preset
            .as_deref()
            .map_or(String::new(), |p| format!(", preset {p}")),
    );
    let active = or_dash(&uploaded.app.active);
    if active == version.version {
        println!("active: {active}");
    } else {
        println!(
            "active: {active} (activate the new one with `mysimbdp app activate {name} {}`)",
            short(&version.version)
        );
    }
}

/// `app list [name]`: the apps, or one app's versions.
pub async fn list(args: ListArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    match &args.name {
        None => {
            let apps: Vec<AppView> = client.send(client.request(Method::GET, "/v1/apps")).await?;
            if args.api.json {
                print_json(&apps)?;
            } else {
                let rows: Vec<Vec<String>> = apps
                    .iter()
                    .map(|app| {
                        vec![
                            app.name.clone(),
                            app.kind.to_string(),
                            short(or_dash(&app.active)).to_owned(),
                            short(or_dash(&app.previous)).to_owned(),
                            app.updated_at.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::figures::table(
                        &["APP", "KIND", "ACTIVE", "PREVIOUS", "UPDATED"],
                        &[],
                        &rows
                    )
                );
            }
        }
        Some(name) => {
            let versions: Vec<VersionView> = client
                .send(client.request(Method::GET, &format!("/v1/apps/{}/versions", segment(name))))
                .await?;
            if args.api.json {
                print_json(&versions)?;
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            if v.active { "*" } else { "" }.to_owned(),
                            v.version.clone(),
                            v.preset.clone().unwrap_or_else(|| "-".to_owned()),
                            v.size.to_string(),
                            v.uploaded_at.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::figures::table(
                        &["", "VERSION", "PRESET", "BYTES", "UPLOADED"],
                        &[3],
                        &rows
                    )
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `app activate name version`
pub async fn activate(args: ActivateArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let app: AppView = client
        .send(
            client
                .request(
                    Method::POST,
                    &format!("/v1/apps/{}/activate", segment(&args.name)),
                )
                .json(&Activate {
                    version: args.version_id,
                }),
        )
        .await?;
    show_active(&args.api, &app)
}

/// `app rollback name`
pub async fn rollback(args: NameArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let app: AppView = client
        .send(client.request(
            Method::POST,
            &format!("/v1/apps/{}/rollback", segment(&args.name)),
        ))
        .await?;
    show_active(&args.api, &app)
}

/// `app delete name --yes`
pub async fn delete(args: NameArgs, yes: bool) -> Result<ExitCode> {
    if !yes {
        bail!(
            "deleting app {:?} removes every version: add --yes to confirm",
            args.name
        );
    }
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    client
        .send_empty(client.request(Method::DELETE, &format!("/v1/apps/{}", segment(&args.name))))
        .await?;
    println!("deleted app {}", args.name);
    Ok(ExitCode::SUCCESS)
}

fn show_active(api: &TenantApi, app: &AppView) -> Result<ExitCode> {
    if api.json {
        print_json(app)?;
    } else {
        println!(
            "{}: active {} (previous {})",
            app.name,
            or_dash(&app.active),
            or_dash(&app.previous)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}
