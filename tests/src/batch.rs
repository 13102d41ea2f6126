//! Batch uploads as tests drive them: files of the orders fixture and their upload.

use crate::host::Host;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};

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
