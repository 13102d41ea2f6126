//! Proves that a guest breaking the canonical ABI (invalid UTF-8, out-of-range tags, lists
//! out of bounds, a hostile `cabi_realloc`, dropped or forged resource handles, the copy
//! limit) ends with the guest's `abi-violation` class, at once and never retried, while the
//! same hand-built components with well-formed values succeed.
//!
//! The components are built here from inline WAT without the SDK: a core module written
//! against the canonical ABI of the 0.1.0 contract (`wit/v0.1.0/`), wrapped by
//! `wit-component` with that WIT — so these tests also prove that apps built against 0.1.0
//! are still admitted and run (the well-formed ones succeed). The last
//! test runs a batch job through a real `serve` (real Redis and MongoDB): such a job fails
//! after one attempt with its file quarantined, instead of being retried until dead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_host::config::SandboxLimits;
use mysimbdp_host::runtime::{App, Failure, FailureClass};
use mysimbdp_tests::sandbox::{options, run_batch, run_stream};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// A fault must end the call this fast: it is found when values cross the boundary.
const QUICK: Duration = Duration::from_secs(5);

/// Wraps a core module (WAT) as a component of `world` in `wit/v0.1.0/`.
fn component(world: &str, core: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/v0.1.0"))
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

/// Little-endian `u32`s, as the canonical ABI lays them out.
fn le(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A WAT data segment holding `content` at `offset`.
fn bytes(offset: u32, content: &[u8]) -> String {
    let mut escaped = String::new();
    for byte in content {
        write!(escaped, "\\{byte:02x}").unwrap();
    }
    format!("(data (i32.const {offset}) \"{escaped}\")\n")
}

/// A bump allocator from 4096 up, honouring the alignment asked for.
const GOOD_REALLOC: &str = "
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

// ---- stream world ------------------------------------------------------------------------
//
// `process` returns a pointer (16) to its result, a `list<outcome>` as (ptr, len). An
// `outcome` (`result<list<document>, app-error>`) is 16 bytes: tag at 0, payload at 4 (ok:
// list (ptr, len); err: `app-error` tag at 4, string at 8). A `document` is 20 bytes:
// `option<string>` id (tag at 0, string at 4), then `json` (ptr, len) at 12.

/// The layout of a well-formed answer: one outcome at 32, ok with one document at 64, whose
/// id is none and whose JSON is `{"a":1}` at 128.
fn good_stream_data() -> Vec<(u32, Vec<u8>)> {
    vec![
        (16, le(&[32, 1])),
        (32, le(&[0, 64, 1])),
        (64, le(&[0, 0, 0, 128, 7])),
        (128, br#"{"a":1}"#.to_vec()),
    ]
}

fn stream_module(pages: u32, realloc: &str, data: &[(u32, Vec<u8>)]) -> String {
    let data: String = data
        .iter()
        .map(|(at, content)| bytes(*at, content))
        .collect();
    format!(
        r#"(module
  (memory (export "memory") {pages})
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {realloc})
  (func (export "mysimbdp:ingest/stream-ingest@0.1.0#process") (param i32 i32) (result i32)
    i32.const 16)
{data})"#
    )
}

/// Runs a stream component (built from `module`) on one message.
async fn stream_outcome(module: &str) -> (Result<usize, Failure>, Duration) {
    let app = load(&component("stream-app", module)).await;
    let started = Instant::now();
    let result = run_stream(
        &app,
        &[r#"{"n":1}"#],
        &options(&[], SandboxLimits::default()),
    )
    .await;
    let elapsed = started.elapsed();
    (result.map(|report| report.outcomes.len()), elapsed)
}

/// A stream answer with `patch` written over the well-formed layout.
async fn stream_with(patch: &[(u32, Vec<u8>)]) -> (Result<usize, Failure>, Duration) {
    let mut data = good_stream_data();
    data.extend(patch.iter().cloned());
    stream_outcome(&stream_module(1, GOOD_REALLOC, &data)).await
}

fn assert_abi_violation(result: Result<usize, Failure>, elapsed: Duration, expected: &str) {
    let failure = result.expect_err("the call should fail");
    assert_eq!(
        failure.class,
        FailureClass::AbiViolation,
        "{}",
        failure.message
    );
    assert!(!failure.class.is_retryable());
    assert!(
        failure.message.contains(expected),
        "expected {expected:?} in {:?}",
        failure.message
    );
    assert!(elapsed < QUICK, "took {elapsed:?}");
    eprintln!("{expected}: {elapsed:?}: {}", failure.message);
}

#[tokio::test]
async fn well_formed_stream_answer_is_accepted() {
    // The obeyed side of every stream case below: the harness's layout is right, so each
    // failure below comes from the one value it breaks.
    let (result, _) = stream_with(&[]).await;
    assert_eq!(result.unwrap(), 1);
}

#[tokio::test]
async fn stream_string_with_invalid_utf8() {
    let (result, elapsed) = stream_with(&[(128, vec![b'{', 0xff, 0xfe, b'}'])]).await;
    assert_abi_violation(result, elapsed, "invalid utf-8");
}

#[tokio::test]
async fn stream_result_tag_out_of_range() {
    let (result, elapsed) = stream_with(&[(32, vec![2])]).await;
    assert_abi_violation(result, elapsed, "invalid expected discriminant");
}

#[tokio::test]
async fn stream_variant_tag_out_of_range() {
    // err(app-error with case 9): app-error has two cases.
    let (result, elapsed) = stream_with(&[(32, vec![1, 0, 0, 0, 9])]).await;
    assert_abi_violation(result, elapsed, "unexpected discriminant: 9");
}

#[tokio::test]
async fn stream_option_tag_out_of_range() {
    let (result, elapsed) = stream_with(&[(64, vec![3])]).await;
    assert_abi_violation(result, elapsed, "invalid option discriminant");
}

#[tokio::test]
async fn stream_list_out_of_bounds() {
    // The outcome's document list points past the end of the one-page memory.
    let (result, elapsed) = stream_with(&[(36, le(&[0xffff_ff00, 4]))]).await;
    assert_abi_violation(result, elapsed, "list pointer/length out of bounds");
}

#[tokio::test]
async fn stream_realloc_beyond_memory() {
    // Receiving the messages needs the guest's allocator; this one answers out of bounds.
    let realloc = "i32.const 0xfffffff0";
    let (result, elapsed) = stream_outcome(&stream_module(1, realloc, &good_stream_data())).await;
    assert_abi_violation(result, elapsed, "realloc return: beyond end of memory");
}

#[tokio::test]
async fn stream_realloc_misaligned() {
    // The message list needs 4-byte alignment; this allocator answers odd addresses.
    let realloc = "global.get $heap i32.const 1 i32.or";
    let (result, elapsed) = stream_outcome(&stream_module(1, realloc, &good_stream_data())).await;
    assert_abi_violation(result, elapsed, "realloc return: result not aligned");
}

#[tokio::test]
async fn stream_copy_limit() {
    // Three million empty documents (20 bytes each in the guest, 60 MB, under the 64 MiB
    // memory cap) would take 144 MB in the host: above wasmtime's per-call copy limit
    // (128 MiB), so the list is refused before anything is copied.
    let data = vec![(16, le(&[32, 1])), (32, le(&[0, 65536, 3_000_000]))];
    let (result, elapsed) = stream_outcome(&stream_module(918, GOOD_REALLOC, &data)).await;
    assert_abi_violation(result, elapsed, "too much data is being copied");
}

// ---- batch world -------------------------------------------------------------------------
//
// `ingest` gets its input as a borrowed handle and returns a pointer (1024) to its result,
// `result<quality, app-error>`: 32 bytes of zeros there read as ok with an empty quality.

/// A batch module whose `ingest` runs `body` (with the handle in local 0) and then returns
/// ok; `drop_input` ends the borrow first, as the canonical ABI asks of a callee.
fn batch_module(realloc: &str, body: &str, data: &[(u32, Vec<u8>)]) -> String {
    let data: String = data
        .iter()
        .map(|(at, content)| bytes(*at, content))
        .collect();
    format!(
        r#"(module
  (import "mysimbdp:ingest/batch-input@0.1.0" "[method]source.size"
    (func $size (param i32) (result i64)))
  (import "mysimbdp:ingest/batch-input@0.1.0" "[method]source.read"
    (func $read (param i32 i32 i32)))
  (import "mysimbdp:ingest/batch-input@0.1.0" "[resource-drop]source"
    (func $drop (param i32)))
  (import "mysimbdp:ingest/batch-output@0.1.0" "emit"
    (func $emit (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) {realloc})
  (func (export "mysimbdp:ingest/batch-ingest@0.1.0#ingest") (param i32) (result i32)
    {body}
    i32.const 1024)
{data})"#
    )
}

/// Runs a batch component over a small file; returns its outcome, the documents that
/// reached the sink, and how long the call took.
async fn batch_outcome(module: &str) -> (Result<u64, Failure>, usize, Duration) {
    let app = load(&component("batch-app", module)).await;
    let started = Instant::now();
    let (result, documents) = run_batch(
        &app,
        "input.csv",
        b"a,b\n1,2\n".to_vec(),
        &options(&[], SandboxLimits::default()),
    )
    .await;
    let elapsed = started.elapsed();
    (
        result.map(|report| report.usage.documents),
        documents.len(),
        elapsed,
    )
}

/// One document at 2048: id none, JSON at 2100 (`json` bytes).
fn one_document(json: &[u8]) -> Vec<(u32, Vec<u8>)> {
    vec![
        (2048, le(&[0, 0, 0, 2100, json.len() as u32])),
        (2100, json.to_vec()),
    ]
}

const DROP_INPUT: &str = "local.get 0 call $drop";
const EMIT_ONE: &str = "i32.const 2048 i32.const 1 call $emit";

#[tokio::test]
async fn well_formed_batch_calls_are_accepted() {
    // The obeyed side of the batch cases: reading, emitting and dropping the borrow with
    // well-formed values succeeds, with this harness's layout and allocator.
    let body = format!(
        "local.get 0 call $size drop \
         local.get 0 i32.const 16 i32.const 512 call $read \
         {EMIT_ONE} {DROP_INPUT}"
    );
    let module = batch_module(GOOD_REALLOC, &body, &one_document(br#"{"a":1}"#));
    let (result, documents, _) = batch_outcome(&module).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(documents, 1);
}

fn assert_batch_abi_violation(
    (result, documents, elapsed): (Result<u64, Failure>, usize, Duration),
    expected: &str,
) {
    assert_abi_violation(result.map(|n| n as usize), elapsed, expected);
    assert_eq!(documents, 0);
}

#[tokio::test]
async fn batch_forged_handle() {
    let body = format!("i32.const 77 call $size drop {DROP_INPUT}");
    let module = batch_module(GOOD_REALLOC, &body, &[]);
    assert_batch_abi_violation(batch_outcome(&module).await, "unknown handle index 77");
}

#[tokio::test]
async fn batch_dropped_handle() {
    let body = format!("{DROP_INPUT} local.get 0 call $size drop");
    let module = batch_module(GOOD_REALLOC, &body, &[]);
    assert_batch_abi_violation(batch_outcome(&module).await, "unknown handle index");
}

#[tokio::test]
async fn batch_borrow_kept_past_return() {
    // Returning without ending the borrow of the input breaks the ABI too.
    let module = batch_module(GOOD_REALLOC, "", &[]);
    assert_batch_abi_violation(
        batch_outcome(&module).await,
        "borrow handles still remain at the end of the call",
    );
}

#[tokio::test]
async fn batch_emit_list_out_of_bounds() {
    let body = format!("i32.const 0xffffff00 i32.const 10 call $emit {DROP_INPUT}");
    let module = batch_module(GOOD_REALLOC, &body, &[]);
    assert_batch_abi_violation(
        batch_outcome(&module).await,
        "list pointer/length out of bounds",
    );
}

#[tokio::test]
async fn batch_emit_invalid_utf8() {
    let body = format!("{EMIT_ONE} {DROP_INPUT}");
    let module = batch_module(GOOD_REALLOC, &body, &one_document(&[b'{', 0xc3, b'}']));
    assert_batch_abi_violation(batch_outcome(&module).await, "invalid utf-8");
}

#[tokio::test]
async fn batch_realloc_beyond_memory() {
    // `read` hands the chunk over through the guest's allocator, which answers out of bounds.
    let body = format!("local.get 0 i32.const 16 i32.const 512 call $read {DROP_INPUT}");
    let module = batch_module("i32.const 0xfffffff0", &body, &[]);
    assert_batch_abi_violation(
        batch_outcome(&module).await,
        "realloc return: beyond end of memory",
    );
}

#[tokio::test]
async fn batch_read_return_area_out_of_bounds() {
    // The return pointer of `read` points past the end of memory.
    let body = format!("local.get 0 i32.const 16 i32.const 0xfffffff0 call $read {DROP_INPUT}");
    let module = batch_module(GOOD_REALLOC, &body, &[]);
    assert_batch_abi_violation(batch_outcome(&module).await, "out of bounds");
}

// ---- platform ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_with_an_abi_violation_fails_once_and_is_not_retried() {
    use reqwest::Method;
    use reqwest::multipart::{Form, Part};

    let host =
        mysimbdp_tests::host::Host::start_on(&mysimbdp_tests::naming::database_name(), "abi-cache")
            .await;
    let id = mysimbdp_tests::unique("abi");
    let token = host.create_tenant(&id, None).await;

    // Faulting on every input, it is refused at upload by the admission probe, with the
    // tenant's class and reason (a host-error here was a 500 with the reason hidden).
    let body = format!("i32.const 77 call $size drop {DROP_INPUT}");
    let wasm = component("batch-app", &batch_module(GOOD_REALLOC, &body, &[]));
    let (status, refused) = host.upload(&token, "forger", wasm).await;
    assert_eq!(status.as_u16(), 422, "{refused}");
    assert_eq!(refused["error"]["class"], "abi-violation", "{refused}");

    // Faulting only on a non-empty file, it passes the probe and fails its first job.
    let body = format!(
        "(if (i64.eqz (call $size (local.get 0))) (then) \
           (else (drop (call $size (i32.const 77))))) {DROP_INPUT}"
    );
    let wasm = component("batch-app", &batch_module(GOOD_REALLOC, &body, &[]));
    let (status, uploaded) = host.upload(&token, "forger", wasm).await;
    assert!(status.is_success(), "{uploaded}");

    let form = Form::new().text("app", "forger").part(
        "file",
        Part::bytes(b"a,b\n1,2\n".to_vec())
            .file_name("input.csv")
            .mime_str("text/csv")
            .unwrap(),
    );
    let started = Instant::now();
    let (status, queued) = host
        .call(
            host.request(Method::POST, "/v1/batch/files", Some(&token))
                .multipart(form),
        )
        .await;
    assert!(status.is_success(), "{queued}");
    let job = queued["files"][0]["job"].as_str().unwrap().to_owned();
    let settled = mysimbdp_tests::poll::wait_until(
        "the job settles and its attempt is logged",
        Duration::from_secs(60).saturating_sub(started.elapsed()),
        async || {
            host.tenant(&token, Method::GET, &format!("/v1/batch/jobs/{job}"), None)
                .await
                .1
        },
        // The worker settles the job, then logs the attempt (error class, documents).
        |body| {
            ["failed", "dead", "done"].contains(&body["status"].as_str().unwrap_or(""))
                && !body["documents"].is_null()
        },
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(
        (
            settled["status"].as_str(),
            settled["error_class"].as_str(),
            settled["attempts"].as_u64()
        ),
        (Some("failed"), Some("abi-violation"), Some(1)),
        "{settled}"
    );
    assert!(
        settled["error"]
            .as_str()
            .unwrap()
            .contains("unknown handle index 77"),
        "{settled}"
    );
    // A retried job would wait out its backoff (seconds) before every further attempt.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    eprintln!("platform: job failed after one attempt in {elapsed:?}");
    host.stop().await;
}
