//! Proves the Python and JavaScript sample apps, built with their SDKs by
//! `scripts/build-lang-apps`, produce documents byte-identical to the Rust samples' (and so
//! the same `_id`s, which come from positions) and the same quality report, on the same
//! inputs: BOM, CRLF, quoted multi-line fields, invalid UTF-8, overflowing numbers, floats
//! such as 1e+16 and 1.5e-7, chunk boundaries inside characters, and messages serde refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_host::config::{SandboxConfig, SandboxLimits};
use mysimbdp_host::runtime::{
    App, BatchInput, Document, FailureClass, Message, OutputBatch, Runtime,
};
use mysimbdp_tests::files::{lang_apps, mysimbdp_binary, target_tmpdir};
use mysimbdp_tests::sandbox::options;
use std::path::PathBuf;
use std::sync::OnceLock;
use tokio::sync::mpsc;

/// The guest languages besides Rust, as `scripts/build-lang-apps` names their builds.
const LANGUAGES: [&str; 2] = ["python", "js"];

/// One runtime for this test binary: the default sandbox, with room to compile 12-18 MB
/// components on a loaded machine (a Python component takes 7-35 s).
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut config = SandboxConfig::default();
        config.engine.cache_dir = Some(target_tmpdir().join("component-cache"));
        config.engine.compiler = Some(mysimbdp_binary());
        config.engine.compile_timeout_ms = 300_000;
        Runtime::new(config).unwrap()
    })
}

async fn load(path: impl Into<PathBuf>) -> App {
    let path = path.into();
    let wasm = std::fs::read(&path).unwrap();
    runtime()
        .load(&wasm)
        .await
        .unwrap_or_else(|f| panic!("loading {}: {f}", path.display()))
}

async fn load_lang(language: &str, app: &str) -> App {
    let dir = tokio::task::spawn_blocking(lang_apps).await.unwrap();
    load(dir.join(format!("{language}-{app}.wasm"))).await
}

/// Limits every language fits in (interpreters need far more fuel per byte than Rust).
fn limits() -> SandboxLimits {
    SandboxLimits {
        fuel_per_input_byte: 100_000,
        fuel: 20_000_000_000,
        deadline_ms: 120_000,
        memory_mib: 256,
        ..SandboxLimits::default()
    }
}

/// What a batch call produced, in a form two languages can be compared in.
#[derive(Debug, PartialEq)]
enum BatchOutcome {
    /// Documents as (id, json), the counts, and each rule with its count and example (the
    /// example of `malformed-row` quotes the CSV library's own error text, so it is left out).
    Done {
        documents: Vec<(Option<String>, String)>,
        records_in: u64,
        records_bad: u64,
        violations: Vec<(String, u64, Option<String>)>,
    },
    /// The call failed: only its class must agree (messages are each language's own words).
    Failed(FailureClass),
}

async fn run_csv(app: &App, csv: &[u8], params: &[(&str, &str)]) -> BatchOutcome {
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
        name: "in.csv".to_owned(),
        size: csv.len() as u64,
        content_type: Some("text/csv".to_owned()),
        reader: Box::new(std::io::Cursor::new(csv.to_vec())),
    };
    let result = runtime()
        .run_batch(app, input, &options(params, limits()), sink)
        .await;
    let documents = collector.await.unwrap();
    match result {
        Ok(report) => BatchOutcome::Done {
            documents: documents.into_iter().map(pair).collect(),
            records_in: report.quality.records_in,
            records_bad: report.quality.records_bad,
            violations: report
                .quality
                .violations
                .into_iter()
                .map(|v| {
                    let example = if v.rule == "malformed-row" {
                        None
                    } else {
                        v.example
                    };
                    (v.rule, v.count, example)
                })
                .collect(),
        },
        Err(failure) => {
            assert!(
                matches!(failure.class, FailureClass::Reject | FailureClass::Retry),
                "a sample app failed with {:?}: {}\n{}",
                failure.class,
                failure.message,
                failure.usage.stderr
            );
            BatchOutcome::Failed(failure.class)
        }
    }
}

fn pair(document: Document) -> (Option<String>, String) {
    (document.id, document.json)
}

const HEADER: &str = "order_id,customer_id,product,quantity,unit_price,ordered_at";

/// A named CSV input and the parameters it runs with.
type CsvCase = (&'static str, Vec<u8>, Vec<(&'static str, &'static str)>);

/// The CSV inputs, each with the parameters it runs with.
fn csv_cases() -> Vec<CsvCase> {
    let ts = "2026-11-21T10:00:00";
    let mut numbers = format!("{HEADER}\n");
    for (i, (quantity, price)) in [
        ("3", "0.1"),
        ("1", "1e+16"),
        ("1", "1.5e-7"),
        ("1", "0.00001"),
        ("7", "0.0001234"),
        ("4294967295", "1e300"),
        ("4294967296", "1"),
        ("+5", "2.675"),
        ("-1", "1"),
        ("2", "-0"),
        ("2", "-1"),
        ("2", "1e400"),
        ("2", "inf"),
        ("2", "NaN"),
        ("2", ".5"),
        ("2", "5."),
        ("2", "1_000"),
        ("2", "0x10"),
        ("2", "1e16"),
        ("3", "333333.335"),
        ("1", "123456789012345680000"),
        ("0", "0"),
        ("12", " 9.99 "),
        ("1", "\u{a0}4.5\u{85}"),
        ("1", "\u{feff}4.5"),
        ("1", "4.5\u{1f}"),
        ("1", "\u{3000}"),
    ]
    .into_iter()
    .enumerate()
    {
        numbers += &format!("{i},c{i},p,{quantity},{price},{ts}\n");
    }
    for id in [
        "9007199254740993",
        "18446744073709551615",
        "18446744073709551616",
        "+42",
        "-0",
        "007",
        "1.0",
    ] {
        numbers += &format!("{id},c,p,1,1,{ts}\n");
    }
    for stamp in [
        "2026-11-21 10:00:00",
        "2026-+5-01T00:00:00",
        "2026-13-01T00:00:00",
        "2026-11-32T00:00:00",
        "2026-11-21T10:00",
        "2026-11-21T10:00:00.123+02:00",
        "２026-11-21T10:00:00",
        "2026-11-21T10:00:00é",
        "2026/11/21T10:00:00",
    ] {
        numbers += &format!("1,c,p,1,1,{stamp}\n");
    }

    let structure = [
        "\u{feff}order_id,customer_id,product,quantity,unit_price,ordered_at\r\n",
        "1,c1,\"multi\r\nline \"\"quoted\"\"\",3,2.5,2026-11-21T10:00:00\r\n",
        "\r\n\r\n",
        "2,c2,p\"x\"y,1,1,2026-11-21T10:00:00\r",
        "3,c3,\"a\"b c,1,1,2026-11-21T10:00:00\n",
        "4,\"\",p,1,1,2026-11-21T10:00:00\n",
        "5,c5,p,1,1,2026-11-21T10:00:00,extra,fields\n",
        "6,c6,p\n",
        ",,,,,\n",
        "7,\" c7 \",\"p,with,commas\",1,1,2026-11-21T10:00:00\n",
        "8,c8,\"tab\there\",1,1,2026-11-21T10:00:00\n",
        "9,c9,\"ctrl\u{1}\u{7f}\",1,1,2026-11-21T10:00:00\n",
        "10,c10,ünïcødé 😀 \\ \"/,1,1,2026-11-21T10:00:00\n",
        "11,c11,\"open quote at the end",
    ]
    .concat()
    .into_bytes();

    let mut invalid = format!("{HEADER}\n1,c1,p,1,1,2026-11-21T10:00:00\n").into_bytes();
    invalid.extend_from_slice(b"2,c\xff2,p,1,1,2026-11-21T10:00:00\n");
    invalid.extend_from_slice(b"3,c3,\"multi\nline \xc3\x28\",1,1,2026-11-21T10:00:00\n");
    invalid.extend_from_slice(b"4,c4,\xed\xa0\x80surrogate,1,1,2026-11-21T10:00:00\n");
    invalid.extend_from_slice(b"5,c5,\xf0\x9f\x98,1,1,2026-11-21T10:00:00\n");
    invalid.extend_from_slice(b"6,c6,ok \xc3\xa9,1,1,2026-11-21T10:00:00\n");
    invalid.extend_from_slice(b"7,c7,truncated at the end \xe2\x82");

    // Rows of multi-byte characters past several 256 KiB chunks, so that characters and
    // quoted fields straddle chunk boundaries; one invalid byte near a boundary.
    let mut big = format!("{HEADER}\n").into_bytes();
    let mut i = 0u64;
    while big.len() < 900 * 1024 {
        let product = match i % 4 {
            0 => "é".repeat((i % 7) as usize + 1),
            1 => "😀".repeat((i % 5) as usize + 1),
            2 => format!("\"quoted,\n{}\"", "ü".repeat((i % 3) as usize)),
            _ => "plain".to_owned(),
        };
        big.extend_from_slice(
            format!(
                "{i},c{i},{product},{},{}.{:02},2026-11-21T10:00:00\n",
                i % 50,
                i % 997,
                i % 100
            )
            .as_bytes(),
        );
        if big.len() > 256 * 1024 - 40 && big.len() < 256 * 1024 {
            big.extend_from_slice(b"999,c\xfe,p,1,1,2026-11-21T10:00:00\n");
        }
        i += 1;
    }

    let semicolons = "unit_price; ordered_at ;order_id;quantity;product;customer_id;extra\n\
         1.25;2026-11-21T10:00:00;1;4;p;c;x\n\
         \"2,5\";2026-11-21T10:00:00;2;4;p;c;x\n"
        .as_bytes()
        .to_vec();

    vec![
        ("numbers", numbers.into_bytes(), vec![]),
        ("structure", structure, vec![("currency", "USD")]),
        ("invalid-utf8", invalid, vec![]),
        ("chunk-boundaries", big, vec![]),
        ("semicolons", semicolons, vec![("delimiter", ";")]),
        (
            "generated",
            fixtures::orders::generate(300 * 1024, 7).0,
            vec![],
        ),
        ("empty", Vec::new(), vec![]),
        ("header-only", format!("{HEADER}\r\n").into_bytes(), vec![]),
        (
            "missing-column",
            b"order_id,customer_id\n1,c\n".to_vec(),
            vec![],
        ),
        ("invalid-header", b"order_id,\xff\n1\n".to_vec(), vec![]),
        (
            "bad-delimiter",
            format!("{HEADER}\n").into_bytes(),
            vec![("delimiter", "ab")],
        ),
    ]
}

#[tokio::test]
async fn csv_batch_apps_agree_with_rust() {
    let rust = load(fixtures::CSV_BATCH).await;
    let mut others = Vec::new();
    for language in LANGUAGES {
        others.push((language, load_lang(language, "csv-batch").await));
    }
    for (case, csv, params) in csv_cases() {
        let expected = run_csv(&rust, &csv, &params).await;
        if let BatchOutcome::Done { documents, .. } = &expected {
            assert!(
                !documents.is_empty() || matches!(case, "empty" | "header-only"),
                "case {case}: the Rust app emitted nothing, so the case proves little"
            );
        }
        for (language, app) in &others {
            let got = run_csv(app, &csv, &params).await;
            if got != expected {
                if let (
                    BatchOutcome::Done {
                        documents: want, ..
                    },
                    BatchOutcome::Done {
                        documents: have, ..
                    },
                ) = (&expected, &got)
                {
                    for (i, (w, h)) in want.iter().zip(have).enumerate() {
                        assert_eq!(w, h, "case {case}: {language} document {i} differs");
                    }
                }
                assert_eq!(got, expected, "case {case}: {language} differs from Rust");
            }
        }
    }
}

/// Stream payloads, as raw bytes.
fn stream_messages() -> Vec<Vec<u8>> {
    let texts = [
        r#"{"device":"d-1","ts":"2026-11-21T10:00:00Z","site":"hel","readings":{"temp":21.5,"hum":40}}"#,
        r#"{"device":"d-2","ts":"2026-11-21T10:00:00Z","readings":{"co2":1e+16,"tiny":1.5e-7,"neg":-0.0,"zero":0,"big":18446744073709551615,"huge":1e300,"int":-42}}"#,
        r#"{"device":"d-3","ts":"2026-11-21T10:00:00Z","site":null,"readings":{"z":1,"a":2,"é":3,"😀":4,"\uffff":5,"B":6}}"#,
        r#"  {"readings":{"pressure":1013.25},"ts":"2026-11-21","device":"  d-4  ","extra":[1,2,{"x":null}]}  "#,
        r#"["d-5","2026-11-21T10:00:00Z","seq",{"temp":1}]"#,
        r#"{"device":"d-6","ts":"2026/11/21","readings":{"temp":1}}"#,
        r#"{"device":"d-7","ts":"2026-11-21T10:00:00Z","readings":{}}"#,
        r#"{"device":" ","ts":"2026-11-21T10:00:00Z","readings":{"temp":1}}"#,
        r#"{"device":"d-9","ts":"2026-11-21T10:00:00Z","readings":{"temp":"hot"}}"#,
        r#"{"device":"d-10","ts":"2026-11-21T10:00:00Z","readings":{"temp":true}}"#,
        r#"{"device":"d-11","ts":"2026-11-21T10:00:00Z","readings":{"temp":1e400}}"#,
        r#"{"device":"d-12","ts":"2026-11-21T10:00:00Z","readings":{"temp":NaN}}"#,
        r#"{"device":"d-13","readings":{"temp":1}}"#,
        r#"{"device":13,"ts":"2026-11-21T10:00:00Z","readings":{"temp":1}}"#,
        r#"{"device":"d-14","ts":"2026-11-21T10:00:00Z","site":5,"readings":{"temp":1}}"#,
        r#"{"device":"d-15","ts":"2026-11-21T10:00:00Z","readings":{"temp":1}} trailing"#,
        r#"not json"#,
        r#""#,
        r#"[1,2]"#,
        r#"{"device":"d-16","ts":"２026-11-21","readings":{"temp":1}}"#,
        r#"{"device":"d-17","ts":"2026-11-2é","readings":{"temp":1}}"#,
        r#"{"device":"d-18","ts":"2026-11-21é","readings":{"temp":1}}"#,
        r#"{"device":"d-19\n\"q\"\u0001","ts":"2026-11-21T10:00:00Z","readings":{"t\"x":2.5}}"#,
        r#"{"device":"d-20","ts":"2026-11-21T10:00:00Z","readings":{"dup":1,"dup":2}}"#,
        r#"{"device":"d-21","ts":"2026-11-21T10:00:00Z","readings":{"temp":123456789012345678901234567890}}"#,
        "\u{feff}{\"device\":\"d-22\",\"ts\":\"2026-11-21T10:00:00Z\",\"readings\":{\"temp\":1}}",
    ];
    let mut messages: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
    messages.push(
        b"{\"device\":\"d-\xff\",\"ts\":\"2026-11-21T10:00:00Z\",\"readings\":{\"temp\":1}}"
            .to_vec(),
    );
    messages
}

/// One message's outcome: its documents as (id, json), or the class it failed with.
type StreamOutcome = Result<Vec<(Option<String>, String)>, FailureClass>;

async fn run_messages(
    app: &App,
    payloads: &[Vec<u8>],
    params: &[(&str, &str)],
) -> Vec<StreamOutcome> {
    let messages: Vec<Message> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| Message {
            id: format!("m{i}"),
            payload: payload.clone(),
            content_type: Some("application/json".to_owned()),
            headers: Vec::new(),
            attempt: 1,
        })
        .collect();
    let report = runtime()
        .run_stream(app, &messages, &options(params, limits()))
        .await
        .unwrap_or_else(|f| panic!("the stream call failed: {f}\n{}", f.usage.stderr));
    report
        .outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(documents) => Ok(documents.into_iter().map(pair).collect()),
            Err(failure) => Err(failure.class),
        })
        .collect()
}

#[tokio::test]
async fn json_stream_apps_agree_with_rust() {
    let rust = load(fixtures::JSON_STREAM).await;
    let payloads = stream_messages();
    let params = [("unit.temp", "K"), ("unit.é", "e")];
    let expected = run_messages(&rust, &payloads, &params).await;
    assert!(expected.iter().filter(|o| o.is_ok()).count() >= 6);
    assert!(expected.iter().filter(|o| o.is_err()).count() >= 10);
    for language in LANGUAGES {
        let app = load_lang(language, "json-stream").await;
        let got = run_messages(&app, &payloads, &params).await;
        for (i, (want, have)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                have,
                want,
                "{language} differs on message {i}: {}",
                String::from_utf8_lossy(&payloads[i])
            );
        }
        assert_eq!(got.len(), expected.len());
    }
}

/// The CSV apps of every language on the platform end to end, as a tenant uses them: uploaded
/// over HTTP with their language's limit preset (the default sandbox limits, refused-import
/// policy and pool counts otherwise), then one staged orders file per tenant through a batch
/// job into MongoDB: every good row lands, once, with the same documents in every language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_ingests_a_file_on_the_platform_with_its_preset() {
    use futures_util::TryStreamExt;
    use mysimbdp_tests::prelude::*;
    use reqwest::Method;

    let dir = tokio::task::spawn_blocking(lang_apps).await.unwrap();
    let database = database_name();
    let host = Host::start_with(&database, "languages-cache", |config| {
        config.sandbox.engine.compile_timeout_ms = 300_000;
    })
    .await;
    let (csv, expected) = fixtures::orders::generate(256 * 1024, 100);
    let mut stored: Vec<Vec<mongodb::bson::Document>> = Vec::new();
    for (language, wasm) in [
        ("rust", PathBuf::from(fixtures::CSV_BATCH)),
        ("python", dir.join("python-csv-batch.wasm")),
        ("js", dir.join("js-csv-batch.wasm")),
    ] {
        let tenant = unique(&format!("lang-{language}"));
        let token = host.create_tenant(&tenant, None).await;
        let (status, body) = host
            .call(
                host.request(
                    Method::PUT,
                    &format!("/v1/apps/orders?preset={language}"),
                    Some(&token),
                )
                .body(std::fs::read(&wasm).unwrap()),
            )
            .await;
        assert!(status.is_success(), "uploading the {language} app: {body}");
        assert_eq!(body["version"]["preset"], language, "{body}");
        let jobs =
            mysimbdp_tests::batch::upload_orders(&host, &token, "orders", vec![csv.clone()]).await;
        let job = mysimbdp_tests::batch::wait_job_ended(
            &host,
            &token,
            &jobs[0],
            std::time::Duration::from_secs(300),
        )
        .await;
        assert_eq!(job["status"], "done", "the {language} job failed: {job}");
        assert_eq!(job["documents"], expected.good, "{language}: {job}");
        let mut documents: Vec<mongodb::bson::Document> = mysimbdp_tests::services::mongo()
            .await
            .database(&tenant_database(&tenant))
            .collection("documents")
            .find(mongodb::bson::doc! {})
            .projection(mongodb::bson::doc! { "_id": 0 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(documents.len() as u64, expected.good, "{language}");
        documents.sort_by_key(|d| d.get("order_id").map(ToString::to_string));
        stored.push(documents);
        host.delete_tenant(&tenant).await;
        drop_database(&tenant_database(&tenant)).await;
    }
    assert!(
        stored[0] == stored[1],
        "Python stored other documents than Rust"
    );
    assert!(
        stored[0] == stored[2],
        "JS stored other documents than Rust"
    );
    host.stop().await;
    drop_database(&database).await;
}
