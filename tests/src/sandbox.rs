//! One sandbox runtime per test binary, as one host process would have, and calls that run
//! an app and collect the documents it emitted.

use mysimbdp_host::config::{SandboxConfig, SandboxLimits};
use mysimbdp_host::runtime::{
    App, BatchInput, BatchReport, CallOptions, Document, Failure, Message, OutputBatch, Runtime,
    StreamReport,
};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

/// One runtime for the whole test binary, as one host process would have.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut config = SandboxConfig::default();
        config.engine.cache_dir = Some(crate::files::target_tmpdir().join("component-cache"));
        // The compile child is the built `mysimbdp`, not this test binary.
        config.engine.compiler = Some(crate::files::mysimbdp_binary());
        Runtime::new(config).expect("the default sandbox config is valid")
    })
}

/// Loads a fixture by path.
pub async fn load(path: &str) -> App {
    let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    runtime()
        .load(&wasm)
        .await
        .unwrap_or_else(|f| panic!("loading {path}: {f}"))
}

/// Call options with the given parameters and limits.
pub fn options(params: &[(&str, &str)], limits: SandboxLimits) -> CallOptions {
    CallOptions {
        label: "test".to_owned(),
        params: Arc::new(
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        limits,
    }
}

/// Runs a batch app over `input` and returns its result with every document it emitted.
pub async fn run_batch(
    app: &App,
    name: &str,
    input: Vec<u8>,
    options: &CallOptions,
) -> (Result<BatchReport, Failure>, Vec<Document>) {
    let (sink, mut batches) = mpsc::channel::<OutputBatch>(4);
    let collector = tokio::spawn(async move {
        let mut documents = Vec::new();
        while let Some(batch) = batches.recv().await {
            assert_eq!(
                batch.first_index,
                documents.len() as u64,
                "batches arrive in order"
            );
            documents.extend(batch.documents);
        }
        documents
    });
    let input = BatchInput {
        name: name.to_owned(),
        size: input.len() as u64,
        content_type: Some("text/csv".to_owned()),
        reader: Box::new(std::io::Cursor::new(input)),
    };
    let result = runtime().run_batch(app, input, options, sink).await;
    (result, collector.await.unwrap())
}

/// Runs a batch app that ignores its input.
pub async fn run_batch_empty(
    app: &App,
    params: &[(&str, &str)],
    limits: SandboxLimits,
) -> Result<BatchReport, Failure> {
    run_batch(app, "empty.csv", Vec::new(), &options(params, limits))
        .await
        .0
}

/// Runs a stream app on messages given as text.
pub async fn run_stream(
    app: &App,
    payloads: &[&str],
    options: &CallOptions,
) -> Result<StreamReport, Failure> {
    let messages: Vec<Message> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Message {
            id: format!("m{i}"),
            payload: p.as_bytes().to_vec(),
            content_type: Some("application/json".to_owned()),
            headers: Vec::new(),
            attempt: 1,
        })
        .collect();
    runtime().run_stream(app, &messages, options).await
}
