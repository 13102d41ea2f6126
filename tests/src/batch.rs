//! Batch uploads as tests drive them: files of the orders fixture, their upload, and their
//! jobs polled until they ended.

use crate::host::Host;
use crate::poll::wait_until;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// `count` CSV files of the orders fixture of about `bytes` each (each a little larger than
/// the last), and the documents they make together.
pub fn orders_files(count: u64, bytes: u64) -> (Vec<Vec<u8>>, u64) {
    let files: Vec<_> = (0..count)
        .map(|i| mysimbdp_fixtures::orders::generate(bytes + i * 7919, 13))
        .collect();
    let expected = files.iter().map(|(_, e)| e.good).sum();
    (files.into_iter().map(|(b, _)| b).collect(), expected)
}

/// Uploads `files` (named `<prefix><i>.csv`) for the `orders` app; the ids of their jobs.
pub async fn upload_orders(
    host: &Host,
    token: &str,
    prefix: &str,
    files: Vec<Vec<u8>>,
) -> Vec<String> {
    let mut form = Form::new().text("app", "orders");
    for (i, bytes) in files.into_iter().enumerate() {
        form = form.part(
            "file",
            Part::bytes(bytes)
                .file_name(format!("{prefix}{i}.csv"))
                .mime_str("text/csv")
                .unwrap(),
        );
    }
    let (status, body) = host
        .call(
            host.request(Method::POST, "/v1/batch/files", Some(token))
                .multipart(form),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["job"].as_str().unwrap().to_owned())
        .collect()
}

/// The statuses a job ends in: no worker moves it out of them (only a replay does).
pub const ENDED: [&str; 3] = ["done", "failed", "dead"];

/// Whether the job (as the API shows it) ended.
pub fn ended(job: &Value) -> bool {
    ENDED.contains(&job["status"].as_str().unwrap_or_default())
}

/// The job as the API shows it; an accepted job is always found.
pub async fn job(host: &Host, token: &str, id: &str) -> Value {
    let (status, body) = host
        .tenant(token, Method::GET, &format!("/v1/batch/jobs/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "job {id}: {body}");
    body
}

/// The jobs as the API shows them, in the order of `ids`.
pub async fn jobs(host: &Host, token: &str, ids: &[String]) -> Vec<Value> {
    let mut all = Vec::with_capacity(ids.len());
    for id in ids {
        all.push(job(host, token, id).await);
    }
    all
}

/// Polls the job until it ended (panics after `within`); the job as it ended.
pub async fn wait_job_ended(host: &Host, token: &str, id: &str, within: Duration) -> Value {
    wait_until(
        &format!("job {id} ended"),
        within,
        async || job(host, token, id).await,
        ended,
    )
    .await
}

/// Polls the jobs until every one ended (panics after `within`); the jobs, in the order of
/// `ids`.
pub async fn wait_jobs_ended(
    host: &Host,
    token: &str,
    ids: &[String],
    within: Duration,
) -> Vec<Value> {
    wait_until(
        "every job ended",
        within,
        async || jobs(host, token, ids).await,
        |all| all.iter().all(ended),
    )
    .await
}
