//! `mysimbdp batch upload|jobs|job|replay`: a tenant's batch ingestion over the API, with a
//! progress bar for uploads.

use crate::client::{Client, TenantApi, print_json, segment};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use mysimbdp_api::{BatchStats, JobStatus, JobSummary, JobView, Queued};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `mysimbdp batch …`
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Upload files for a batch app; each becomes a job.
    Upload(UploadArgs),
    /// List your batch jobs, newest first.
    Jobs {
        /// Only jobs with this status (queued, running, retrying, paused, done, failed, dead).
        #[arg(long)]
        status: Option<String>,
        /// The API and the tenant's token.
        #[command(flatten)]
        api: TenantApi,
    },
    /// Show one job.
    Job(JobArgs),
    /// Run a dead-lettered or quarantined job again.
    Replay(JobArgs),
    /// Your ingestion statistics.
    Stats {
        /// The API and the tenant's token.
        #[command(flatten)]
        api: TenantApi,
    },
}

/// Arguments of `batch upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The batch app to run.
    #[arg(long)]
    pub app: String,
    /// The files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// An app parameter, `name=value`; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
    pub params: Vec<(String, String)>,
    /// Wait until every job has finished, and say how each ended.
    #[arg(long)]
    pub wait: bool,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// A job and the API.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job id.
    pub id: String,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// Runs a `batch` command.
pub async fn run(command: BatchCommand) -> Result<ExitCode> {
    match command {
        BatchCommand::Upload(args) => upload(args).await,
        BatchCommand::Jobs { status, api } => jobs(status, &api).await,
        BatchCommand::Job(args) => job(&args).await,
        BatchCommand::Replay(args) => replay(&args).await,
        BatchCommand::Stats { api } => stats(&api).await,
    }
}

/// `batch jobs`: a table, or the JSON array.
async fn jobs(status: Option<String>, api: &TenantApi) -> Result<ExitCode> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let path = match status {
        Some(status) => format!("/v1/batch/jobs?status={}", segment(&status)),
        None => "/v1/batch/jobs".to_owned(),
    };
    let request = client.request(Method::GET, &path);
    let jobs: Vec<JobSummary> = client.send(request).await?;
    if api.json {
        print_json(&jobs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            vec![
                job.id.clone(),
                job.status.as_str().to_owned(),
                job.attempts.to_string(),
                job.app.clone(),
                job.file.clone(),
                crate::figures::clip(job.error.as_deref().unwrap_or(""), 72),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::figures::table(
            &["JOB", "STATUS", "TRY", "APP", "FILE", "ERROR"],
            &[2],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `batch job`
async fn job(args: &JobArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let job = fetch_job(&client, &args.id).await?;
    print_job(&args.api, &job)
}

/// `batch replay`
async fn replay(args: &JobArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let job: JobView = client
        .send(client.request(
            Method::POST,
            &format!("/v1/batch/jobs/{}/replay", segment(&args.id)),
        ))
        .await?;
    print_job(&args.api, &job)
}

/// `batch stats`: the figures as text, or the JSON.
async fn stats(api: &TenantApi) -> Result<ExitCode> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let stats: BatchStats = client
        .send(client.request(Method::GET, "/v1/stats"))
        .await?;
    if api.json {
        print_json(&stats)?;
    } else {
        print!("{}", crate::figures::batch_stats(&stats));
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch_job(client: &Client, id: &str) -> Result<JobView> {
    client
        .send(client.request(Method::GET, &format!("/v1/batch/jobs/{}", segment(id))))
        .await
}

fn print_job(api: &TenantApi, job: &JobView) -> Result<ExitCode> {
    if api.json {
        print_json(job)?;
    } else {
        println!(
            "job {}: {} after {} attempt(s), {} documents{}",
            job.id,
            job.status,
            job.attempts,
            job.documents
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            job.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `batch upload`: streams the files in one multipart request, then, with `--wait`, follows
/// each job to its end.
async fn upload(args: UploadArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    // Every size is read before anything is sent, so a missing file fails the whole upload.
    let sizes = file_sizes(&args.files)?;
    let bar = progress_bar(sizes.iter().sum());
    let form = upload_form(&args, &sizes, &bar).await?;
    let result: Result<Queued> = client
        .send(
            client
                .request(Method::POST, "/v1/batch/files")
                .multipart(form),
        )
        .await;
    bar.finish_and_clear();
    let queued = result.context("uploading the files")?;
    if args.api.json && !args.wait {
        print_json(&queued)?;
        return Ok(ExitCode::SUCCESS);
    }
    for file in &queued.files {
        println!(
            "queued {} ({} bytes) as job {}",
            file.file, file.size, file.job
        );
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    wait_for_jobs(&client, &args.api, &queued).await
}

fn file_sizes(files: &[PathBuf]) -> Result<Vec<u64>> {
    files
        .iter()
        .map(|file| {
            Ok(std::fs::metadata(file)
                .with_context(|| format!("reading {file:?}"))?
                .len())
        })
        .collect()
}

/// A bar over the files' bytes, advanced as they are read into the request.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "uploading [{bar:32}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// The multipart form: the app, its parameters, and each file as a stream of its declared
/// size, so no file is held in memory.
async fn upload_form(args: &UploadArgs, sizes: &[u64], bar: &ProgressBar) -> Result<Form> {
    let mut form = Form::new().text("app", args.app.clone());
    for (name, value) in &args.params {
        form = form.text("param", format!("{name}={value}"));
    }
    for (path, &size) in args.files.iter().zip(sizes) {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {path:?}"))?;
        let counted = bar.clone();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    counted.inc(chunk.len() as u64);
                }
            });
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".to_owned());
        let part =
            Part::stream_with_length(reqwest::Body::wrap_stream(stream), size).file_name(name);
        form = form.part("file", part);
    }
    Ok(form)
}

/// Polls each queued job until it ends and prints it; fails with `EXIT_APP_FAILED` if any
/// job did not end done.
async fn wait_for_jobs(client: &Client, api: &TenantApi, queued: &Queued) -> Result<ExitCode> {
    let started = Instant::now();
    let mut failed = false;
    for file in &queued.files {
        let job = loop {
            let job = fetch_job(client, &file.job).await?;
            if job.status.is_terminal() {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        failed |= job.status != JobStatus::Done;
        print_job(api, &job)?;
    }
    eprintln!(
        "all jobs finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(if failed {
        ExitCode::from(crate::EXIT_APP_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
