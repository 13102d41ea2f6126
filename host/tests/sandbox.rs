//! Proves the sandbox's limits: each evil app ends with its own failure class in bounded
//! time, every limit has an obeyed/violated pair, and the same host process goes on to run
//! good apps correctly afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::config::SandboxLimits;
use mysimbdp_host::runtime::{AppKind, FailureClass, Origin};
use mysimbdp_tests::sandbox::{load, options, run_batch, run_batch_empty, run_stream, runtime};
use std::time::{Duration, Instant};

/// Every fixture must have a test named after it in this file.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
fixtures::foreach_fixture!(assert_test_exists);

fn limits() -> SandboxLimits {
    SandboxLimits::default()
}

fn class_of<T: std::fmt::Debug>(
    result: Result<T, mysimbdp_host::runtime::Failure>,
) -> FailureClass {
    result.expect_err("the call should fail").class
}

// ---- the sample apps -------------------------------------------------------------------

#[tokio::test]
async fn csv_batch() {
    let app = load(fixtures::CSV_BATCH).await;
    assert_eq!(app.kind, AppKind::Batch);
    let (csv, expected) = fixtures::orders::generate(2 << 20, 100);
    let (result, documents) = run_batch(
        &app,
        "orders.csv",
        csv,
        &options(&[("currency", "USD")], limits()),
    )
    .await;
    let report = result.unwrap();
    assert_eq!(documents.len() as u64, expected.good);
    assert_eq!(report.usage.documents, expected.good);
    assert_eq!(report.quality.records_in, expected.rows);
    assert_eq!(report.quality.records_bad, expected.bad);
    let rules: Vec<&str> = report
        .quality
        .violations
        .iter()
        .map(|v| v.rule.as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "bad-price",
            "bad-timestamp",
            "missing-field",
            "not-an-integer"
        ]
    );
    let first: serde_json::Value = serde_json::from_str(&documents[0].json).unwrap();
    assert_eq!(first["order_id"], 1);
    assert_eq!(first["currency"], "USD");
    let total = first["quantity"].as_f64().unwrap() * first["unit_price"].as_f64().unwrap();
    assert!(
        (first["total"].as_f64().unwrap() - total).abs() < 0.006,
        "{first}"
    );
    assert!(report.usage.fuel > 0);
}

#[tokio::test]
async fn csv_batch_rejects_a_file_without_the_required_columns() {
    let app = load(fixtures::CSV_BATCH).await;
    let (result, documents) = run_batch(
        &app,
        "wrong.csv",
        b"id,name\n1,x\n".to_vec(),
        &options(&[], limits()),
    )
    .await;
    let failure = result.unwrap_err();
    assert_eq!(failure.class, FailureClass::Reject);
    assert!(
        failure.message.contains("no column \"order_id\""),
        "{}",
        failure.message
    );
    assert!(documents.is_empty());
}

#[tokio::test]
async fn large_input_streams_through_a_small_memory_cap() {
    // 48 MiB of CSV through a guest capped at 16 MiB: the input is never in memory whole.
    let app = load(fixtures::CSV_BATCH).await;
    let (csv, expected) = fixtures::orders::generate(48 << 20, 1000);
    let small = SandboxLimits {
        memory_mib: 16,
        ..limits()
    };
    let (result, documents) = run_batch(&app, "big.csv", csv, &options(&[], small)).await;
    result.unwrap();
    assert_eq!(documents.len() as u64, expected.good);
}

#[tokio::test]
async fn json_stream() {
    let app = load(fixtures::JSON_STREAM).await;
    assert_eq!(app.kind, AppKind::Stream);
    let payloads = [
        r#"{"device":"d1","ts":"2026-11-21T10:00:00Z","site":"hel","readings":{"temp":21.5,"hum":40}}"#,
        "not json at all",
        r#"{"device":"d2","ts":"2026-11-21T10:00:01Z","readings":{"temp":"hot"}}"#,
        r#"{"device":"","ts":"2026-11-21T10:00:01Z","readings":{"temp":1}}"#,
        r#"{"device":"d3","ts":"2026-11-21T10:00:02Z","readings":{"co2":415}}"#,
    ];
    let report = run_stream(
        &app,
        &payloads,
        &options(&[("unit.co2", "ppm-v")], limits()),
    )
    .await
    .unwrap();
    assert_eq!(report.outcomes.len(), payloads.len());
    let ok: Vec<usize> = report
        .outcomes
        .iter()
        .map(|o| o.as_ref().map_or(usize::MAX, Vec::len))
        .collect();
    assert_eq!(ok, [2, usize::MAX, usize::MAX, usize::MAX, 1]);
    for i in [1, 2, 3] {
        assert_eq!(
            report.outcomes[i].as_ref().unwrap_err().class,
            FailureClass::Reject
        );
    }
    let reason = &report.outcomes[2].as_ref().unwrap_err().message;
    assert!(reason.contains("\"temp\" is not a number"), "{reason}");
    let co2: serde_json::Value =
        serde_json::from_str(&report.outcomes[4].as_ref().unwrap()[0].json).unwrap();
    assert_eq!(co2["unit"], "ppm-v");
    assert_eq!(report.usage.documents, 3);
}

#[tokio::test]
async fn stream_output_caps_apply_per_message() {
    let app = load(fixtures::JSON_STREAM).await;
    let payloads = [
        r#"{"device":"d1","ts":"2026-11-21T10:00:00Z","readings":{"temp":1,"hum":2}}"#,
        r#"{"device":"d2","ts":"2026-11-21T10:00:00Z","readings":{"temp":1}}"#,
    ];
    let one_each = SandboxLimits {
        max_documents_per_call: 1,
        ..limits()
    };
    let report = run_stream(&app, &payloads, &options(&[], one_each))
        .await
        .unwrap();
    assert_eq!(
        report.outcomes[0].as_ref().unwrap_err().class,
        FailureClass::OutputLimit
    );
    assert_eq!(report.outcomes[1].as_ref().unwrap().len(), 1);
}

#[tokio::test]
async fn apps_only_run_in_their_own_world() {
    let batch = load(fixtures::CSV_BATCH).await;
    let stream = load(fixtures::JSON_STREAM).await;
    let failure = run_stream(&batch, &["{}"], &options(&[], limits()))
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::InvalidComponent);
    assert_eq!(
        class_of(run_batch_empty(&stream, &[], limits()).await),
        FailureClass::InvalidComponent
    );
}

// ---- fuel ------------------------------------------------------------------------------

#[tokio::test]
async fn fuel_obeyed() {
    let app = load(fixtures::EVIL_LOOP).await;
    let report = run_batch_empty(&app, &[("iterations", "10000")], limits())
        .await
        .unwrap();
    assert!(
        report.usage.fuel > 10_000,
        "the loop burnt {} fuel",
        report.usage.fuel
    );
}

#[tokio::test]
async fn fuel_violated() {
    let app = load(fixtures::EVIL_LOOP).await;
    let budget = SandboxLimits {
        fuel: 5_000_000,
        ..limits()
    };
    let failure = run_batch_empty(&app, &[("iterations", "1000000000000")], budget)
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutOfFuel);
    assert_eq!(failure.usage.fuel, 5_000_000);
}

// ---- deadline --------------------------------------------------------------------------

#[tokio::test]
async fn deadline_obeyed() {
    let app = load(fixtures::EVIL_LOOP).await;
    let quick = SandboxLimits {
        fuel: u64::MAX / 4,
        deadline_ms: 5000,
        ..limits()
    };
    run_batch_empty(&app, &[("iterations", "100000")], quick)
        .await
        .unwrap();
}

#[tokio::test]
async fn deadline_violated() {
    let app = load(fixtures::EVIL_LOOP).await;
    let deadline = Duration::from_millis(300);
    let endless_fuel = SandboxLimits {
        fuel: u64::MAX / 4,
        deadline_ms: 300,
        ..limits()
    };
    let started = Instant::now();
    let failure = run_batch_empty(&app, &[], endless_fuel).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(failure.class, FailureClass::Deadline, "{failure}");
    assert!(
        elapsed >= deadline,
        "stopped before its deadline: {elapsed:?}"
    );
    // Deadline plus one 10 ms epoch tick; the slack absorbs a loaded CI machine.
    assert!(
        elapsed < deadline + Duration::from_secs(3),
        "took {elapsed:?}"
    );
}

#[tokio::test]
async fn evil_sleep() {
    // Blocked in a host call, the app runs no wasm for the epoch check to stop: the tokio
    // timeout around the call ends it.
    let app = load(fixtures::EVIL_SLEEP).await;
    let short = SandboxLimits {
        deadline_ms: 300,
        ..limits()
    };
    let started = Instant::now();
    let failure = run_batch_empty(&app, &[], short).await.unwrap_err();
    assert_eq!(failure.class, FailureClass::Deadline, "{failure}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

// ---- memory ----------------------------------------------------------------------------

#[tokio::test]
async fn memory_obeyed() {
    let app = load(fixtures::EVIL_MEMBOMB).await;
    run_batch_empty(
        &app,
        &[("mib", "16")],
        SandboxLimits {
            memory_mib: 32,
            ..limits()
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn memory_violated() {
    let app = load(fixtures::EVIL_MEMBOMB).await;
    let failure = run_batch_empty(
        &app,
        &[("mib", "48")],
        SandboxLimits {
            memory_mib: 32,
            ..limits()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(failure.class, FailureClass::MemoryLimit, "{failure}");
    assert!(
        failure.message.contains("above the cap of 33554432 bytes"),
        "{}",
        failure.message
    );
}

// ---- output ----------------------------------------------------------------------------

#[tokio::test]
async fn output_obeyed() {
    let app = load(fixtures::EVIL_FLOOD).await;
    let report = run_batch_empty(&app, &[("mode", "total"), ("count", "5000")], limits())
        .await
        .unwrap();
    assert_eq!(report.usage.documents, 5000);
    let report = run_batch_empty(&app, &[("mode", "per-call"), ("count", "10000")], limits())
        .await
        .unwrap();
    assert_eq!(report.usage.documents, 10_000);
}

#[tokio::test]
async fn output_violated_by_documents_per_call() {
    let app = load(fixtures::EVIL_FLOOD).await;
    let failure = run_batch_empty(&app, &[("mode", "per-call"), ("count", "10001")], limits())
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutputLimit);
    assert!(
        failure.message.contains("10001 documents in one call"),
        "{}",
        failure.message
    );
    assert_eq!(
        failure.usage.documents, 0,
        "nothing of the refused call counts"
    );
}

#[tokio::test]
async fn output_violated_by_document_size() {
    let app = load(fixtures::EVIL_FLOOD).await;
    let failure = run_batch_empty(&app, &[("mode", "large"), ("kib", "2048")], limits())
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutputLimit);
    assert!(
        failure.message.contains("above the cap of 1048576"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn output_violated_by_total_bytes() {
    let app = load(fixtures::EVIL_FLOOD).await;
    let small = SandboxLimits {
        output_mib: 2,
        ..limits()
    };
    let failure = run_batch_empty(&app, &[("mode", "total")], small)
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutputLimit);
    assert!(failure.usage.output_bytes <= 2 << 20);
}

// ---- stack and host calls ---------------------------------------------------------------

#[tokio::test]
async fn stack_obeyed() {
    let app = load(fixtures::EVIL_RECURSION).await;
    run_batch_empty(&app, &[("depth", "1000")], limits())
        .await
        .unwrap();
}

#[tokio::test]
async fn stack_violated() {
    let app = load(fixtures::EVIL_RECURSION).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::StackOverflow
    );
}

#[tokio::test]
async fn host_calls_obeyed() {
    let app = load(fixtures::EVIL_HOSTCALLS).await;
    let report = run_batch_empty(&app, &[("calls", "1000")], limits())
        .await
        .unwrap();
    assert!(report.usage.host_calls >= 1000);
    assert!(report.usage.logs_dropped == 0);
}

#[tokio::test]
async fn host_calls_violated() {
    let app = load(fixtures::EVIL_HOSTCALLS).await;
    let few = SandboxLimits {
        host_calls: 5000,
        ..limits()
    };
    let failure = run_batch_empty(&app, &[], few).await.unwrap_err();
    assert_eq!(failure.class, FailureClass::HostCallLimit);
    assert_eq!(failure.usage.host_calls, 5001);
    assert!(
        failure.usage.logs_dropped > 0,
        "log lines past the cap are dropped, not kept"
    );
}

// ---- one test per evil fixture -----------------------------------------------------------

#[tokio::test]
async fn evil_loop() {
    let app = load(fixtures::EVIL_LOOP).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::OutOfFuel
    );
}

#[tokio::test]
async fn evil_membomb() {
    let app = load(fixtures::EVIL_MEMBOMB).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::MemoryLimit
    );
}

#[tokio::test]
async fn evil_recursion() {
    let app = load(fixtures::EVIL_RECURSION).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::StackOverflow
    );
}

#[tokio::test]
async fn evil_flood() {
    let app = load(fixtures::EVIL_FLOOD).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::OutputLimit
    );
}

#[tokio::test]
async fn evil_panic() {
    let app = load(fixtures::EVIL_PANIC).await;
    let (result, _) = run_batch(&app, "input.csv", b"a\n".to_vec(), &options(&[], limits())).await;
    let failure = result.unwrap_err();
    assert_eq!(failure.class, FailureClass::Panic);
    assert!(
        failure
            .message
            .contains("evil app panicked on purpose while reading input.csv"),
        "{failure}"
    );
    assert!(
        failure.usage.stderr.contains("panicked at"),
        "{}",
        failure.usage.stderr
    );
}

#[tokio::test]
async fn evil_hostcalls() {
    let app = load(fixtures::EVIL_HOSTCALLS).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::HostCallLimit
    );
}

#[tokio::test]
async fn evil_bad_output() {
    let app = load(fixtures::EVIL_BAD_OUTPUT).await;
    let failure = run_batch_empty(&app, &[], limits()).await.unwrap_err();
    assert_eq!(failure.class, FailureClass::BadOutput);
    assert!(
        failure.message.contains("not a JSON object"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn evil_unstorable() {
    // The sandbox lets these through (each looks like a JSON object); the sink's one rule
    // refuses or stores each exactly, document by document.
    let app = load(fixtures::EVIL_UNSTORABLE).await;
    let input = b"first\nnul-key\nnull-id\ndollar\nextended\nwide\nlast\n".to_vec();
    let (result, documents) = run_batch(&app, "shapes.txt", input, &options(&[], limits())).await;
    result.unwrap();
    assert_eq!(documents.len(), 7);
    let stored: Vec<Result<mongodb::bson::Document, String>> = documents
        .iter()
        .map(|d| {
            mysimbdp_host::documents::to_stored(&d.json, d.id.as_deref(), || "id".to_owned())
                .map(|raw| raw.to_document().unwrap())
        })
        .collect();
    assert!(stored[0].is_ok() && stored[6].is_ok());
    assert!(
        stored[1].as_ref().unwrap_err().contains("NUL"),
        "{stored:?}"
    );
    assert!(
        stored[2].as_ref().unwrap_err().contains("null"),
        "{stored:?}"
    );
    assert!(
        stored[3].as_ref().unwrap_err().contains("'$'"),
        "{stored:?}"
    );
    let extended = stored[4].as_ref().unwrap();
    assert_eq!(
        extended.get_document("p").unwrap(),
        &mongodb::bson::doc! { "note": "keep me", "$numberLong": "5" }
    );
    let wide = stored[5].as_ref().unwrap();
    assert_eq!(wide.get_array("numbers").unwrap().len(), 32 * 1024);
}

#[tokio::test]
async fn evil_flaky() {
    let app = load(fixtures::EVIL_FLAKY).await;
    let failure = run_batch_empty(&app, &[], limits()).await.unwrap_err();
    assert_eq!(failure.class, FailureClass::Retry);
    assert!(failure.class.is_retryable());
    assert_eq!(failure.message, "upstream reference data is unavailable");
}

#[tokio::test]
async fn evil_poison() {
    let app = load(fixtures::EVIL_POISON).await;
    let report = run_stream(
        &app,
        &[
            r#"{"n":1}"#,
            r#"{"n":2,"fail":"reject"}"#,
            r#"{"n":3,"fail":"retry"}"#,
        ],
        &options(&[], limits()),
    )
    .await
    .unwrap();
    let documents = report.outcomes[0].as_ref().unwrap();
    assert_eq!(documents.len(), 1);
    assert!(
        documents[0].json.contains(r#""n":1"#),
        "{}",
        documents[0].json
    );
    assert_eq!(
        report.outcomes[1].as_ref().unwrap_err().class,
        FailureClass::Reject
    );
    assert_eq!(
        report.outcomes[2].as_ref().unwrap_err().class,
        FailureClass::Retry
    );
    // One trapping message takes the whole call down: the stream host isolates it.
    let batch = [r#"{"n":1}"#, r#"{"n":2,"fail":"panic"}"#];
    assert_eq!(
        class_of(run_stream(&app, &batch, &options(&[], limits())).await),
        FailureClass::Panic
    );
    assert_eq!(
        class_of(run_stream(&app, &[r#"{"fail":"loop"}"#], &options(&[], limits())).await),
        FailureClass::OutOfFuel
    );
}

#[tokio::test]
async fn evil_exit() {
    let app = load(fixtures::EVIL_EXIT).await;
    let failure = run_batch_empty(&app, &[], limits()).await.unwrap_err();
    assert_eq!(failure.class, FailureClass::Panic);
    assert!(!failure.class.is_retryable());
    assert!(
        failure.message.contains("called exit(0)"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn evil_resources() {
    let app = load(fixtures::EVIL_RESOURCES).await;
    assert_eq!(
        class_of(run_batch_empty(&app, &[], limits()).await),
        FailureClass::ResourceLimit
    );
}

#[tokio::test]
async fn resources_obeyed() {
    let app = load(fixtures::EVIL_RESOURCES).await;
    let few = SandboxLimits {
        resources: 50,
        ..limits()
    };
    run_batch_empty(&app, &[("count", "40")], few)
        .await
        .unwrap();
}

#[tokio::test]
async fn resources_violated() {
    let app = load(fixtures::EVIL_RESOURCES).await;
    let few = SandboxLimits {
        resources: 50,
        ..limits()
    };
    let failure = run_batch_empty(&app, &[("count", "60")], few)
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::ResourceLimit);
}

#[tokio::test]
async fn evil_escape() {
    // Redis listens on 127.0.0.1:6379 on every machine that runs these tests, so a refused
    // connection there is the sandbox's doing, not an absent server.
    let app = load(fixtures::EVIL_ESCAPE).await;
    for target in ["network", "file", "env"] {
        let (result, documents) = run_batch(
            &app,
            "x.csv",
            Vec::new(),
            &options(&[("target", target)], limits()),
        )
        .await;
        let failure = result.expect_err(target);
        assert_eq!(failure.class, FailureClass::Reject, "{target}: {failure}");
        assert!(documents.is_empty(), "{target} escaped: {documents:?}");
    }
}

async fn refused(path: &str) -> String {
    let wasm = std::fs::read(path).unwrap();
    let failure = runtime()
        .load(&wasm)
        .await
        .err()
        .expect("the component should be refused");
    assert_eq!(failure.class, FailureClass::InvalidComponent);
    failure.message
}

#[tokio::test]
async fn evil_unknown_import() {
    let reason = refused(fixtures::EVIL_UNKNOWN_IMPORT).await;
    assert!(reason.contains("imports evil:spy/exfiltrate"), "{reason}");
}

#[tokio::test]
async fn evil_wrong_world() {
    let reason = refused(fixtures::EVIL_WRONG_WORLD).await;
    assert!(
        reason.contains("wrong world") && reason.contains("wasi:cli/run"),
        "{reason}"
    );
}

#[tokio::test]
async fn core_module() {
    let reason = refused(fixtures::CORE_MODULE).await;
    assert!(
        reason.contains("core WebAssembly module, not a component"),
        "{reason}"
    );
}

#[tokio::test]
async fn truncated_component_is_refused() {
    let wasm = std::fs::read(fixtures::CSV_BATCH).unwrap();
    let failure = runtime().load(&wasm[..wasm.len() / 2]).await.err().unwrap();
    assert_eq!(failure.class, FailureClass::InvalidComponent);
    assert!(
        failure.message.starts_with("not a valid component"),
        "{}",
        failure.message
    );
}

// ---- the host survives ------------------------------------------------------------------

#[tokio::test]
async fn same_host_runs_good_apps_after_every_evil_one() {
    let expectations = [
        (fixtures::EVIL_LOOP, FailureClass::OutOfFuel),
        (fixtures::EVIL_MEMBOMB, FailureClass::MemoryLimit),
        (fixtures::EVIL_RECURSION, FailureClass::StackOverflow),
        (fixtures::EVIL_FLOOD, FailureClass::OutputLimit),
        (fixtures::EVIL_PANIC, FailureClass::Panic),
        (fixtures::EVIL_HOSTCALLS, FailureClass::HostCallLimit),
        (fixtures::EVIL_BAD_OUTPUT, FailureClass::BadOutput),
        (fixtures::EVIL_FLAKY, FailureClass::Retry),
        (fixtures::EVIL_EXIT, FailureClass::Panic),
        (fixtures::EVIL_RESOURCES, FailureClass::ResourceLimit),
    ];
    let good = load(fixtures::CSV_BATCH).await;
    let (csv, expected) = fixtures::orders::generate(256 << 10, 50);
    // Bounded: each ends within its deadline plus one epoch tick (slack for a loaded machine).
    let bound = Duration::from_millis(limits().deadline_ms + 10) + Duration::from_secs(3);
    for (path, class) in expectations {
        let evil = load(path).await;
        let started = Instant::now();
        let result = run_batch_empty(&evil, &[], limits()).await;
        assert!(
            started.elapsed() < bound,
            "{path} took {:?}",
            started.elapsed()
        );
        assert_eq!(class_of(result), class, "{path}");
        let (result, documents) =
            run_batch(&good, "orders.csv", csv.clone(), &options(&[], limits())).await;
        result.unwrap_or_else(|f| panic!("after {path}: {f}"));
        assert_eq!(documents.len() as u64, expected.good, "after {path}");
    }
}

#[tokio::test]
async fn compiled_components_are_cached_and_corrupt_entries_recompiled() {
    let dir = tempdir("cache-test");
    let mut config = mysimbdp_host::config::SandboxConfig::default();
    config.engine.cache_dir = Some(dir.clone());
    config.engine.compiler = Some(mysimbdp_tests::files::mysimbdp_binary());
    let runtime = mysimbdp_host::runtime::Runtime::new(config).unwrap();
    let wasm = std::fs::read(fixtures::EVIL_FLAKY).unwrap();
    assert_eq!(runtime.load(&wasm).await.unwrap().origin, Origin::Compiled);
    assert_eq!(runtime.load(&wasm).await.unwrap().origin, Origin::Cached);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one artifact, no temp files left: {entries:?}"
    );
    // A single flipped bit deep in the artifact, then a truncated file: both are rebuilt.
    let mut artifact = std::fs::read(&entries[0]).unwrap();
    let middle = artifact.len() / 2;
    artifact[middle] ^= 0x01;
    std::fs::write(&entries[0], &artifact).unwrap();
    let app = runtime.load(&wasm).await.unwrap();
    assert_eq!(
        app.origin,
        Origin::Compiled,
        "a corrupt cache entry is rebuilt, not trusted"
    );
    std::fs::write(&entries[0], b"short").unwrap();
    assert_eq!(runtime.load(&wasm).await.unwrap().origin, Origin::Compiled);
    assert_eq!(runtime.load(&wasm).await.unwrap().origin, Origin::Cached);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = mysimbdp_tests::files::target_tmpdir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn smoke_instantiation_runs_only_start_up_code() {
    for path in [
        fixtures::CSV_BATCH,
        fixtures::JSON_STREAM,
        fixtures::EVIL_LOOP,
    ] {
        let app = load(path).await;
        runtime()
            .smoke_instantiate(&app, &options(&[], limits()))
            .await
            .unwrap_or_else(|f| panic!("{path}: {f}"));
    }
}

#[tokio::test]
async fn stream_calls_are_under_the_same_limits() {
    let app = load(fixtures::JSON_STREAM).await;
    let message = r#"{"device":"d1","ts":"2026-11-21T10:00:00Z","readings":{"temp":1}}"#;
    let starved = SandboxLimits {
        fuel: 10_000,
        fuel_per_input_byte: 0,
        ..limits()
    };
    let failure = run_stream(&app, &[message; 50], &options(&[], starved))
        .await
        .unwrap_err();
    assert_eq!(failure.class, FailureClass::OutOfFuel);
    let report = run_stream(&app, &[message; 50], &options(&[], limits()))
        .await
        .unwrap();
    assert_eq!(report.usage.documents, 50);
}

/// A slow sink slows the app down but does not make it miss its deadline: time blocked on
/// the sink is not the app's time.
#[tokio::test]
async fn waiting_for_a_slow_sink_does_not_count_against_the_deadline() {
    let app = mysimbdp_tests::sandbox::load(fixtures::CSV_BATCH).await;
    let (csv, expected) = fixtures::orders::generate(1 << 20, 0);
    let tight = SandboxLimits {
        deadline_ms: 400,
        deadline_ms_per_input_mib: 0,
        ..limits()
    };
    let (sink, mut batches) = tokio::sync::mpsc::channel::<mysimbdp_host::runtime::OutputBatch>(1);
    let slow = tokio::spawn(async move {
        let mut documents = 0u64;
        while let Some(batch) = batches.recv().await {
            documents += batch.documents.len() as u64;
            // Not a gate: this is the slow sink the test is about.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        documents
    });
    let input = mysimbdp_host::runtime::BatchInput {
        name: "slow-sink.csv".to_owned(),
        size: csv.len() as u64,
        content_type: Some("text/csv".to_owned()),
        reader: Box::new(std::io::Cursor::new(csv)),
    };
    let started = std::time::Instant::now();
    let report = mysimbdp_tests::sandbox::runtime()
        .run_batch(
            &app,
            input,
            &mysimbdp_tests::sandbox::options(&[], tight),
            sink,
        )
        .await
        .unwrap_or_else(|f| panic!("the app was failed for the sink's slowness: {f}"));
    assert!(
        started.elapsed() > std::time::Duration::from_millis(800),
        "the sink was not slow enough to prove anything"
    );
    assert_eq!(slow.await.unwrap(), expected.good);
    assert_eq!(report.quality.records_in, expected.rows);
}
