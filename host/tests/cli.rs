//! Proves the `mysimbdp app check` and `app run` commands an app developer uses: clear
//! one-line refusals, the right kind for good apps, correct documents and summaries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::cli::stderr;
use mysimbdp_tests::files::{mysimbdp_binary, scratch, target_tmpdir};
use std::path::{Path, PathBuf};
use std::process::Output;

fn mysimbdp(args: &[&str]) -> Output {
    mysimbdp_tests::cli::command()
        .args(args)
        .env("MYSIMBDP_CACHE_DIR", target_tmpdir().join("cli-cache"))
        .env("RUST_LOG", "error")
        .output()
        .expect("running mysimbdp")
}

/// A file in this run's own scratch directory.
fn scratch_file(name: &str) -> PathBuf {
    scratch(&format!("cli-{}", std::process::id())).join(name)
}

/// The shared support finds the binary and the scratch root by itself (Cargo tells only the
/// test crate); they must be Cargo's.
#[test]
fn the_shared_support_finds_what_cargo_built() {
    assert_eq!(mysimbdp_binary(), Path::new(env!("CARGO_BIN_EXE_mysimbdp")));
    assert_eq!(target_tmpdir(), Path::new(env!("CARGO_TARGET_TMPDIR")));
}

/// `mysimbdp app run <app> --input <scratch file with contents> <extra>... --summary-json`.
fn run_app(app: &str, input: &str, contents: &str, extra: &[&str]) -> Output {
    let path = scratch_file(input);
    std::fs::write(&path, contents).unwrap();
    let mut args = vec!["app", "run", app, "--input", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--summary-json");
    mysimbdp(&args)
}

/// The `--summary-json` object: the last line on stderr.
fn summary(output: &Output) -> serde_json::Value {
    let text = stderr(output);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON summary ({e}) in:\n{text}"))
}

#[test]
fn check_accepts_both_sample_apps_with_their_kind() {
    for (path, kind) in [
        (fixtures::CSV_BATCH, "batch"),
        (fixtures::JSON_STREAM, "stream"),
    ] {
        let output = mysimbdp(&["app", "check", path, "--json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["kind"], kind);
        assert_eq!(report["world"], format!("mysimbdp:ingest/{kind}-app@0.2.0"));
        assert_eq!(report["size"], std::fs::metadata(path).unwrap().len());
        assert!(
            report["imports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i == "mysimbdp:ingest/params@0.2.0")
        );
    }
    let text = mysimbdp(&["app", "check", fixtures::CSV_BATCH]);
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .starts_with("ok: batch app (mysimbdp:ingest/batch-app@0.2.0)")
    );
}

#[test]
fn check_refuses_malformed_components_with_one_line_reasons() {
    let not_wasm = scratch_file("notes.wasm");
    std::fs::write(&not_wasm, "this is a text file").unwrap();
    let truncated = scratch_file("truncated.wasm");
    let csv = std::fs::read(fixtures::CSV_BATCH).unwrap();
    std::fs::write(&truncated, &csv[..csv.len() / 3]).unwrap();
    let cases = [
        (not_wasm.to_str().unwrap(), "not a WebAssembly binary"),
        (
            fixtures::CORE_MODULE,
            "core WebAssembly module, not a component",
        ),
        (fixtures::EVIL_WRONG_WORLD, "targets the wrong world"),
        (fixtures::EVIL_UNKNOWN_IMPORT, "imports evil:spy/exfiltrate"),
        (truncated.to_str().unwrap(), "not a valid component"),
    ];
    for (path, reason) in cases {
        let output = mysimbdp(&["app", "check", path]);
        assert_eq!(output.status.code(), Some(1), "{path}");
        let text = stderr(&output);
        assert_eq!(
            text.trim_end().lines().count(),
            1,
            "one line for {path}: {text}"
        );
        assert!(
            text.starts_with("error: ") && text.contains(reason),
            "{path}: {text}"
        );
    }
    let missing = mysimbdp(&["app", "check", "/nonexistent/app.wasm"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/app.wasm"));
}

#[test]
fn run_ingests_a_csv_file_with_deterministic_ids() {
    let input = scratch_file("orders.csv");
    let mut file = std::fs::File::create(&input).unwrap();
    let expected = fixtures::orders::write(&mut file, 1 << 20, 250).unwrap();
    drop(file);
    let run = || {
        mysimbdp(&[
            "app",
            "run",
            fixtures::CSV_BATCH,
            "--input",
            input.to_str().unwrap(),
            "--param",
            "currency=SEK",
            "--summary-json",
        ])
    };
    let output = run();
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, expected.good);
    assert!(lines.iter().all(|d| d["currency"] == "SEK"));
    // Ids of the ordered scheme, as a job's: one prefix per source, then the position.
    let prefix = &lines[0]["_id"].as_str().unwrap()[..17];
    for (i, d) in lines.iter().enumerate() {
        assert_eq!(d["_id"], format!("{prefix}{i:016x}"), "document {i}");
    }
    let summary = summary(&output);
    assert_eq!(summary["status"], "ok");
    assert_eq!(summary["kind"], "batch");
    assert_eq!(summary["documents"], expected.good);
    assert_eq!(summary["input_bytes"], expected.bytes);
    assert_eq!(summary["quality"]["records_in"], expected.rows);
    assert_eq!(summary["quality"]["records_bad"], expected.bad);
    assert!(summary["peak_rss_mib"].as_f64().unwrap() > 0.0);
    // A second run produces the same ids: a replay never duplicates.
    assert_eq!(run().stdout, output.stdout);
}

#[test]
fn run_processes_stream_messages_and_reports_rejects() {
    let messages = "{\"device\":\"d1\",\"ts\":\"2026-11-21T10:00:00Z\",\"readings\":{\"temp\":21.5,\"hum\":40}}\n\
         garbage\n\
         \n\
         {\"device\":\"d2\",\"ts\":\"2026-11-21T10:00:00Z\",\"readings\":{\"temp\":3}}\n";
    let output = run_app(
        fixtures::JSON_STREAM,
        "readings.jsonl",
        messages,
        &["--batch-size", "2"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
    let text = stderr(&output);
    assert!(text.contains("message readings.jsonl:2: reject:"), "{text}");
    let summary = summary(&output);
    assert_eq!(summary["messages"], 3);
    assert_eq!(summary["failed_messages"]["reject"], 1);
}

#[test]
fn run_reports_an_evil_apps_failure_class_and_exits_3() {
    let output = run_app(
        fixtures::EVIL_MEMBOMB,
        "any.csv",
        "x\n",
        &["--memory-mib", "16"],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let summary = summary(&output);
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["failure"]["class"], "memory-limit");
}

#[test]
fn run_refuses_bad_limits_and_params() {
    let output = mysimbdp(&[
        "app",
        "run",
        fixtures::CSV_BATCH,
        "--input",
        "x",
        "--param",
        "novalue",
    ]);
    assert_eq!(output.status.code(), Some(2), "clap usage error");
    assert!(stderr(&output).contains("is not NAME=VALUE"));
    let output = mysimbdp(&[
        "app",
        "run",
        fixtures::CSV_BATCH,
        "--input",
        "x",
        "--memory-mib",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("memory_mib = 0"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn run_refuses_a_document_that_only_looks_like_an_object() {
    let output = run_app(
        fixtures::EVIL_BAD_OUTPUT,
        "any2.csv",
        "x\n",
        &["--param", "shape=braces"],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let summary = summary(&output);
    assert_eq!(summary["failure"]["class"], "bad-output");
    assert!(
        summary["failure"]["message"]
            .as_str()
            .unwrap()
            .starts_with("document 1: not a JSON object")
    );
    // The good document before it was written; nothing after it.
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
}
