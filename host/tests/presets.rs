//! Limit presets and the representative-input probe through a real `serve` (real Redis and
//! MongoDB): a preset above the operator's ceiling is refused with its key; a chosen preset
//! reaches the version's jobs; a sample the app fails on under the limits it will run with
//! refuses the upload with the app's failure class, and passes under a preset that fits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::config::SandboxOverrides;
use mysimbdp_tests::batch::{orders_files, upload_orders, wait_job_ended};
use mysimbdp_tests::prelude::*;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// A preset whose base fuel covers the admission probe (an empty input) but nothing per
/// input byte: a real file runs out of fuel under it.
fn starved() -> SandboxOverrides {
    SandboxOverrides {
        fuel: Some(50_000_000),
        fuel_per_input_byte: Some(0),
        ..SandboxOverrides::default()
    }
}

async fn host() -> Host {
    Host::start_with(&database_name(), "presets-cache", |config| {
        config.sandbox.presets = BTreeMap::from([
            ("rust".to_owned(), SandboxOverrides::default()),
            ("starved".to_owned(), starved()),
            (
                "heavy".to_owned(),
                SandboxOverrides {
                    fuel_per_input_byte: Some(1_000_000),
                    ..SandboxOverrides::default()
                },
            ),
        ]);
    })
    .await
}

/// Uploads the CSV app as `orders` under `preset`, with `sample` as a multipart form.
async fn upload(
    host: &Host,
    token: &str,
    preset: &str,
    sample: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let request = host.request(
        Method::PUT,
        &format!("/v1/apps/orders?preset={preset}"),
        Some(token),
    );
    let wasm = read(fixtures::CSV_BATCH);
    let request = match sample {
        Some(sample) => request.multipart(
            Form::new()
                .part("component", Part::bytes(wasm).file_name("orders.wasm"))
                .part("sample", Part::bytes(sample).file_name("sample.csv")),
        ),
        None => request
            .header("content-type", "application/wasm")
            .body(wasm),
    };
    host.call(request).await
}

/// Runs one job of `file` and returns it once it ended.
async fn job(host: &Host, token: &str, file: Vec<u8>) -> Value {
    let jobs = upload_orders(host, token, "presets-", vec![file]).await;
    wait_job_ended(host, token, &jobs[0], Duration::from_secs(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presets_reach_jobs_and_samples_are_probed_under_them() {
    let host = host().await;
    let token = host.create_tenant("presets", None).await;
    let (mut files, _) = orders_files(1, 512 * 1024);
    let file = files.remove(0);

    // Above the ceiling ([sandbox.max] by default allows 45,000 per byte): refused, named.
    let (status, body) = upload(&host, &token, "heavy", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_preset", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("fuel_per_input_byte = 1000000") && message.contains("ceiling"),
        "{message}"
    );

    // Chosen, it reaches the version's jobs: the probe passes, a real file runs out of fuel.
    let (status, body) = upload(&host, &token, "starved", None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"]["preset"], "starved", "{body}");
    // The version says the limits it runs under: the preset's; the app's are the defaults.
    assert_eq!(body["version"]["limits"]["fuel"], 50_000_000, "{body}");
    assert_eq!(
        body["version"]["limits"]["fuel_per_input_byte"], 0,
        "{body}"
    );
    assert_eq!(body["app"]["limits"]["fuel_per_input_byte"], 500, "{body}");
    let (_, shown) = host
        .tenant(&token, Method::GET, "/v1/apps/orders", None)
        .await;
    assert_eq!(
        shown["versions"][0]["limits"]["fuel"], 50_000_000,
        "{shown}"
    );
    let ended = job(&host, &token, file.clone()).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error_class"], "out-of-fuel", "{ended}");

    // The same component under the rust preset: the same file goes through.
    let (status, body) = upload(&host, &token, "rust", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"]["preset"], "rust", "{body}");
    let ended = job(&host, &token, file.clone()).await;
    assert_eq!(ended["status"], "done", "{ended}");

    // With the file as its sample, the starved preset is refused at upload, with the class
    // the job would have failed with; under the rust preset the sample passes.
    let (status, body) = upload(&host, &token, "starved", Some(file.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["class"], "out-of-fuel", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("sample"), "{message}");
    let (status, body) = upload(&host, &token, "rust", Some(file)).await;
    assert!(status.is_success(), "{body}");

    // A sample above apps.probe_sample_max_kib is refused while it streams.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let (status, body) = upload(&host, &token, "rust", Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    host.stop().await;
}
