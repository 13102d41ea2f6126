//! The two contract versions the host serves, end to end through the sandbox: a 0.2.0 batch
//! app's `emit-ndjson` and a 0.2.0 stream app's `ndjson` outcome (caps counted per line, a
//! bad line kept for the writer to refuse alone, its neighbours intact), a 0.1.0 app beside
//! them, and the admission rules that tell the versions apart.
//!
//! The components are built here from inline WAT against `wit/` (0.2.0) and `wit/v0.1.0/`,
//! wrapped by `wit-component`, as in `abi.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_host::config::SandboxLimits;
use mysimbdp_host::runtime::{App, Contract, FailureClass};
use mysimbdp_tests::sandbox::{options, run_batch, run_stream};
use std::fmt::Write as _;

/// Wraps a core module (WAT) as a component of `world` in the WIT directory `dir`.
fn component(dir: &str, world: &str, core: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(format!("{}/../{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let world = resolve.select_world(&[package], Some(world)).unwrap();
    let mut module = wat::parse_str(core).unwrap_or_else(|e| panic!("{e}\n{core}"));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

async fn load(wasm: &[u8]) -> App {
    mysimbdp_tests::sandbox::runtime()
        .load(wasm)
        .await
        .unwrap_or_else(|f| panic!("loading a hand-built component: {f}"))
}

/// A WAT data segment holding `content` at `offset`.
fn data(offset: u32, content: &[u8]) -> String {
    let mut escaped = String::new();
    for byte in content {
        write!(escaped, "\\{byte:02x}").unwrap();
    }
    format!("(data (i32.const {offset}) \"{escaped}\")\n")
}

fn le(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A bump allocator from 4096 up (the host hands a stream app its messages through it).
const REALLOC: &str = "
    (local $p i32)
    global.get $heap
    local.get 2
    i32.add
    i32.const 1
    i32.sub
    i32.const 0
    local.get 2
    i32.sub
    i32.and
    local.tee $p
    local.get 3
    i32.add
    global.set $heap
    local.get $p";

/// A 0.2.0 batch app that hands `ndjson` to `emit-ndjson` once and returns an empty quality
/// report (`ok` with zeros: the result at 1024 is all zero bytes).
fn ndjson_batch_app(ndjson: &[u8]) -> Vec<u8> {
    let module = format!(
        r#"(module
  (import "mysimbdp:ingest/batch-output@0.2.0" "emit-ndjson" (func $emit (param i32 i32)))
  (import "mysimbdp:ingest/batch-input@0.2.0" "[resource-drop]source" (func $drop (param i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {REALLOC})
  (func (export "mysimbdp:ingest/batch-ingest@0.2.0#ingest") (param i32) (result i32)
    local.get 0
    call $drop
    i32.const 128
    i32.const {len}
    call $emit
    i32.const 1024)
{data})"#,
        len = ndjson.len(),
        data = data(128, ndjson),
    );
    component("wit", "batch-app", &module)
}

#[tokio::test]
async fn ndjson_lines_become_documents_and_a_bad_line_stays_alone() {
    let ndjson = b"{\"a\":1}\n\n[1]\n  \r\n{\"_id\":\"k\",\"b\":2}\r\n\xff{}\n{\"c\":3}";
    let app = load(&ndjson_batch_app(ndjson)).await;
    assert_eq!(app.contract, Contract::V0_2);
    let (result, documents) = run_batch(
        &app,
        "f.csv",
        Vec::new(),
        &options(&[], SandboxLimits::default()),
    )
    .await;
    let report = result.unwrap();
    let bodies: Vec<&str> = documents.iter().map(|d| d.json.as_str()).collect();
    // Blank lines are skipped; a line that is not an object, or not UTF-8 (an empty body),
    // is kept in its place so the writer refuses it alone and the indices of its
    // neighbours (their derived ids) do not move.
    assert_eq!(
        bodies,
        [
            "{\"a\":1}",
            "[1]",
            "{\"_id\":\"k\",\"b\":2}\r",
            "",
            "{\"c\":3}"
        ]
    );
    assert!(documents.iter().all(|d| d.id.is_none()));
    assert_eq!(report.usage.documents, 5);
    let stored: Vec<bool> = documents
        .iter()
        .map(|d| mysimbdp_host::documents::to_stored(&d.json, None, || "x".to_owned()).is_ok())
        .collect();
    assert_eq!(stored, [true, false, true, false, true]);
    let ids = mysimbdp_host::documents::IdScheme::CURRENT.ids("t", "f.csv");
    let own_id = mysimbdp_host::documents::stored_json(&ids, 2, bodies[2], None).unwrap();
    assert!(own_id.starts_with("{\"_id\":\"k\""), "{own_id}");
}

#[tokio::test]
async fn ndjson_output_caps_count_each_line() {
    let app = load(&ndjson_batch_app(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n")).await;
    let too_many = SandboxLimits {
        max_documents_per_call: 2,
        ..SandboxLimits::default()
    };
    let failure = run_batch(&app, "f.csv", Vec::new(), &options(&[], too_many))
        .await
        .0
        .unwrap_err();
    assert_eq!(
        failure.class,
        FailureClass::OutputLimit,
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("emit-ndjson"),
        "{}",
        failure.message
    );
    let too_big = SandboxLimits {
        max_document_bytes: 6,
        ..SandboxLimits::default()
    };
    let failure = run_batch(&app, "f.csv", Vec::new(), &options(&[], too_big))
        .await
        .0
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutputLimit);
    assert!(
        failure.message.contains("document 0 is 7 bytes"),
        "{}",
        failure.message
    );
}

/// A stream app of `dir`'s contract answering one outcome, laid out by `outcome` at 32.
fn stream_app(dir: &str, version: &str, outcome: &[u32], body: &[u8]) -> Vec<u8> {
    let module = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {REALLOC})
  (func (export "mysimbdp:ingest/stream-ingest@{version}#process") (param i32 i32) (result i32)
    i32.const 16)
{d16}{d32}{d128})"#,
        d16 = data(16, &le(&[32, 1])),
        d32 = data(32, &le(outcome)),
        d128 = data(128, body),
    );
    component(dir, "stream-app", &module)
}

#[tokio::test]
async fn a_stream_outcome_may_be_ndjson() {
    // 0.2.0 outcome: result tag 0 (ok) at 0; `documents` tag 1 (ndjson) at 4; list at 8.
    let body = b"{\"a\":1}\n{\"b\":2}\n";
    let app = load(&stream_app(
        "wit",
        "0.2.0",
        &[0, 1, 128, body.len() as u32],
        body,
    ))
    .await;
    assert_eq!(app.contract, Contract::V0_2);
    let report = run_stream(&app, &["{}"], &options(&[], SandboxLimits::default()))
        .await
        .unwrap();
    let documents = report.outcomes.into_iter().next().unwrap().unwrap();
    let bodies: Vec<&str> = documents.iter().map(|d| d.json.as_str()).collect();
    assert_eq!(bodies, ["{\"a\":1}", "{\"b\":2}"]);
    assert_eq!(report.usage.documents, 2);
    // The caps apply per message, each line counting as a document.
    let limits = SandboxLimits {
        max_documents_per_call: 1,
        ..SandboxLimits::default()
    };
    let report = run_stream(&app, &["{}"], &options(&[], limits))
        .await
        .unwrap();
    let failure = report.outcomes.into_iter().next().unwrap().unwrap_err();
    assert_eq!(
        failure.class,
        FailureClass::OutputLimit,
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_0_1_0_stream_app_is_admitted_and_runs() {
    // 0.1.0 outcome (`result<list<document>, app-error>`) at 32 = ok, list (ptr 64, len 1);
    // the document at 64 = id none, json (ptr 128, len 7); the JSON at 128.
    let module = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {REALLOC})
  (func (export "mysimbdp:ingest/stream-ingest@0.1.0#process") (param i32 i32) (result i32)
    i32.const 16)
{}{}{}{})"#,
        data(16, &le(&[32, 1])),
        data(32, &le(&[0, 64, 1])),
        data(64, &le(&[0, 0, 0, 128, 7])),
        data(128, b"{\"a\":1}"),
    );
    let app = load(&component("wit/v0.1.0", "stream-app", &module)).await;
    assert_eq!(app.contract, Contract::V0_1);
    let report = run_stream(&app, &["{}"], &options(&[], SandboxLimits::default()))
        .await
        .unwrap();
    let documents = report.outcomes.into_iter().next().unwrap().unwrap();
    assert_eq!(documents[0].json, "{\"a\":1}");
}

#[tokio::test]
async fn a_0_1_0_batch_app_emits_records() {
    // `emit` of 0.1.0 with one document (id none, json at 256) listed at 128.
    let module = format!(
        r#"(module
  (import "mysimbdp:ingest/batch-output@0.1.0" "emit" (func $emit (param i32 i32)))
  (import "mysimbdp:ingest/batch-input@0.1.0" "[resource-drop]source" (func $drop (param i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {REALLOC})
  (func (export "mysimbdp:ingest/batch-ingest@0.1.0#ingest") (param i32) (result i32)
    local.get 0
    call $drop
    i32.const 128
    i32.const 1
    call $emit
    i32.const 1024)
{}{})"#,
        data(128, &le(&[0, 0, 0, 256, 7])),
        data(256, b"{\"a\":1}"),
    );
    let app = load(&component("wit/v0.1.0", "batch-app", &module)).await;
    assert_eq!(app.contract, Contract::V0_1);
    let (result, documents) = run_batch(
        &app,
        "f.csv",
        Vec::new(),
        &options(&[], SandboxLimits::default()),
    )
    .await;
    result.unwrap();
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].json, "{\"a\":1}");
}
