//! The API as an attacker and a careless client meet it, against the real services: tenant
//! queries reach MongoDB only through the operator allowlist and stop at their time bound;
//! a refused write writes nothing or says exactly what it wrote, and a retry with the key it
//! was given writes nothing twice; permanent errors are 4xx with reasons; slow, silent and
//! idle connections are cut while `/healthz` keeps answering; the connection bound holds;
//! `/metrics` is the operator's; the `Bearer` scheme is case-insensitive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mongodb::bson::doc;
use mysimbdp_tests::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fresh tenant id (tenant databases are shared by every test on the coredms).
fn tenant_id(prefix: &str) -> String {
    mysimbdp_tests::unique(prefix)
}

async fn stored(tenant: &str, collection: &str) -> u64 {
    tenant_collection(tenant, collection)
        .await
        .count_documents(doc! {})
        .await
        .unwrap()
}

async fn read(
    host: &Host,
    token: &str,
    collection: &str,
    query: &[(&str, &str)],
) -> (StatusCode, Value) {
    let url =
        reqwest::Url::parse_with_params(&format!("{}/v1/data/{collection}", host.base), query)
            .unwrap();
    host.call(host.http.get(url).bearer_auth(token)).await
}

async fn write_ndjson(
    host: &Host,
    token: &str,
    collection: &str,
    body: String,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = host
        .request(Method::POST, &format!("/v1/data/{collection}"), Some(token))
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    host.call(request).await
}

fn lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|n| format!("{{\"n\":{n}}}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daas_queries_run_no_code_and_stop_at_their_time_limit() {
    let host = Host::start().await;
    let tenant = tenant_id("query");
    let token = host
        .create_tenant(&tenant, Some(json!({ "daas": { "max_query_ms": 200 } })))
        .await;
    // Documents with long strings, so a backtracking regex makes a scan slow.
    let filler = "ab".repeat(600);
    let documents: Vec<Value> = (0..4000)
        .map(|n| json!({ "n": n, "s": format!("{filler}{n}") }))
        .collect();
    let (status, body) = host
        .tenant(
            &token,
            Method::POST,
            "/v1/data/slow",
            Some(json!(documents)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["inserted"], 4000);

    // Server-side JavaScript and aggregation expressions, in every part of the request and at
    // any depth: refused at once, before anything reaches MongoDB.
    let spin = json!({ "$function": {
        "body": "function() { var t = Date.now(); while (Date.now() - t < 30000) {} return 1; }",
        "args": [], "lang": "js" } });
    let attacks = [
        ("projection", json!({ "x": spin }), "$function"),
        (
            "projection",
            json!({ "x": { "$let": { "vars": { "v": spin }, "in": "$$v" } } }),
            "$let",
        ),
        (
            "projection",
            json!({ "x": { "$map": { "input": [1], "in": spin } } }),
            "$map",
        ),
        ("projection", json!({ "x": "$s" }), "projection"),
        (
            "filter",
            json!({ "$where": "sleep(30000) || true" }),
            "$where",
        ),
        (
            "filter",
            json!({ "$expr": { "$function": spin["$function"] } }),
            "$expr",
        ),
        (
            "filter",
            json!({ "n": { "$elemMatch": { "$expr": true } } }),
            "$expr",
        ),
        (
            "filter",
            json!({ "$or": [{ "n": 1 }, { "$accumulator": {} }] }),
            "$accumulator",
        ),
    ];
    for (part, value, named) in attacks {
        let started = Instant::now();
        let (status, body) = read(&host, &token, "slow", &[(part, &value.to_string())]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{part} {value}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named) && message.contains(part), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{part} {value} took {:?}",
            started.elapsed()
        );
    }

    // Allowed operators still work, in the filter and the projection.
    let (status, body) = read(
        &host,
        &token,
        "slow",
        &[
            ("filter", r#"{"n":{"$in":[3,5]},"s":{"$regex":"ab"}}"#),
            ("projection", r#"{"n":1,"_id":0}"#),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut found: Vec<u64> = body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d.as_object().unwrap().len(), 1, "projected to n only: {d}");
            d["n"].as_u64().unwrap()
        })
        .collect();
    found.sort_unstable();
    assert_eq!(found, [3, 5]);

    // A query made only of allowed operators but slow on purpose stops at the profile's bound
    // and is refused as the tenant's (422), not answered as an outage to retry.
    let started = Instant::now();
    let (status, body) = read(
        &host,
        &token,
        "slow",
        &[("filter", r#"{"s":{"$regex":"a.*b.*a.*b.*a.*z"}}"#)],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "query_timeout", "{body}");
    assert!(
        took < Duration::from_secs(3),
        "the 200 ms bound took {took:?}"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_write_nothing_or_say_exactly_what_they_wrote() {
    let host = Host::start().await;
    let tenant = tenant_id("refused");
    let token = host
        .create_tenant(
            &tenant,
            Some(json!({
                "daas": { "max_documents_per_request": 10 },
                "sink": { "insert_batch": 4 },
            })),
        )
        .await;

    // A JSON body over the document count: refused whole, nothing written.
    let eleven: Vec<Value> = (1..=11).map(|n| json!({ "n": n })).collect();
    let (status, body) = host
        .tenant(&token, Method::POST, "/v1/data/json", Some(json!(eleven)))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["written"]["inserted"], 0, "{body}");
    assert_eq!(stored(&tenant, "json").await, 0);
    // A JSON body with a syntax error at its very end: nothing written either.
    let (status, body) = host
        .call(
            host.request(Method::POST, "/v1/data/json", Some(&token))
                .header("content-type", "application/json")
                .body(r#"[{"n":1},{"n":2},{"n":"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(stored(&tenant, "json").await, 0);

    // NDJSON is written as it arrives: over the count, the answer says exactly how far it got
    // (two batches of 4), and that is what the collection holds.
    let (status, body) = write_ndjson(&host, &token, "nd", lines(1..=11), Some("nd-1")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let written = &body["error"]["written"];
    assert_eq!(written["inserted"], 8, "{body}");
    assert_eq!(written["through"], 8, "{body}");
    assert_eq!(written["idempotency_key"], "nd-1", "{body}");
    assert_eq!(stored(&tenant, "nd").await, 8);
    // The client retries what it was told failed, within the limit, with the same key: the
    // 8 already there are duplicates, nothing is written twice.
    let (status, body) = write_ndjson(&host, &token, "nd", lines(1..=10), Some("nd-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["inserted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(8))
    );
    assert_eq!(stored(&tenant, "nd").await, 10);

    // Without a key the host picks one and returns it, so a retry can still be exact.
    let (status, body) = write_ndjson(&host, &token, "auto", lines(1..=3), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = body["idempotency_key"].as_str().unwrap().to_owned();
    let (_, again) = write_ndjson(&host, &token, "auto", lines(1..=3), Some(&key)).await;
    assert_eq!(
        (again["inserted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(stored(&tenant, "auto").await, 3);

    // A cut-off NDJSON stream: Content-Length promises more than comes, then the client
    // closes its side. The answer says what was written (one batch of 4: line 5 and the
    // half line never were), and the collection agrees.
    let address = host.base.trim_start_matches("http://").to_owned();
    let mut sent = lines(1..=5);
    sent.push_str("{\"n\":");
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/data/cut HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/x-ndjson\r\nIdempotency-Key: cut-1\r\n\
                 Content-Length: {}\r\n\r\n{sent}",
                sent.len() + 1000
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the host answers a cut-off body")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    let body: Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["error"]["code"], "body_incomplete", "{body}");
    assert_eq!(body["error"]["written"]["inserted"], 4, "{body}");
    assert_eq!(body["error"]["written"]["through"], 4, "{body}");
    assert_eq!(stored(&tenant, "cut").await, 4);
    let (status, body) = write_ndjson(&host, &token, "cut", lines(1..=6), Some("cut-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["inserted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(stored(&tenant, "cut").await, 6);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_4xx_with_position_and_reason() {
    let host = Host::start().await;
    let tenant = tenant_id("permanent");
    let token = host
        .create_tenant(&tenant, Some(json!({ "daas": { "max_request_mib": 64 } })))
        .await;

    // Collection names MongoDB's drivers cannot use are refused by name, on writes and reads
    // (`..` itself is a dot segment no HTTP client sends; the names unit test covers it).
    for name in [".x", "x.", "a..b", "system.users", "a$b", "1x"] {
        let path = format!("/v1/data/{}", name.replace('$', "%24"));
        let (status, body) = host
            .tenant(&token, Method::POST, &path, Some(json!({ "n": 1 })))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(body["error"]["field"], "collection", "{body}");
        let (status, _) = host.tenant(&token, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
    }

    // A key with NUL and a document over 16 MiB as BSON: refused by position with a reason;
    // their neighbours land.
    let huge = "x".repeat(17 * 1024 * 1024);
    let body = json!([
        { "n": 0 },
        { "bad\u{0}key": 1 },
        { "n": 2, "blob": huge },
        { "n": 3 },
    ]);
    let (status, body) = host
        .tenant(&token, Method::POST, "/v1/data/mixed", Some(body))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        &body.to_string()[..500.min(body.to_string().len())]
    );
    assert_eq!(body["inserted"], 2, "{body}");
    assert_eq!(body["rejected_count"], 2, "{body}");
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["at"], 1);
    assert!(
        rejected[0]["reason"].as_str().unwrap().contains("BSON"),
        "{body}"
    );
    assert_eq!(rejected[1]["at"], 2);
    assert!(
        rejected[1]["reason"].as_str().unwrap().contains("16777216"),
        "{body}"
    );
    assert_eq!(stored(&tenant, "mixed").await, 2);

    // A query MongoDB itself refuses is the tenant's too (400 with MongoDB's words only).
    let (status, body) = read(
        &host,
        &token,
        "mixed",
        &[("filter", r#"{"n":{"$regex":"("}}"#)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!body.to_string().contains("clusterTime"), "{body}");
    host.stop().await;
}

/// Reads from `stream` until the peer closes it (or `within` passes); returns what came.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    closed
        .ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// `/healthz` answers, and fast, on a fresh connection.
async fn healthy_fast(host: &Host) {
    // No pooled connection: the host cuts idle keep-alive connections after the short
    // header timeout these tests set, and a pooled one reused just as it is cut fails with
    // an incomplete message, which says nothing about whether the host answers.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(format!("{}/healthz", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "/healthz took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_connections_are_cut_while_healthz_answers() {
    let host = Host::start_with(&database_name(), "control-plane-cache", |config| {
        config.server.header_timeout_ms = 600;
        config.server.body_idle_timeout_ms = 600;
        config.server.request_timeout_ms = 2_000;
        config.server.upload_body_idle_timeout_ms = 600;
        config.server.upload_timeout_ms = 2_000;
    })
    .await;
    let tenant = tenant_id("slow");
    let token = host.create_tenant(&tenant, None).await;
    let address = host.base.trim_start_matches("http://").to_owned();
    let bound = Duration::from_secs(5);

    let mut silent = TcpStream::connect(&address).await.unwrap();
    let mut half_header = TcpStream::connect(&address).await.unwrap();
    half_header
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n").as_bytes())
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut short_body = TcpStream::connect(&address).await.unwrap();
    short_body
        .write_all(
            format!(
                "POST /v1/data/slow HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{\"n\":1}}"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    healthy_fast(&host).await;

    // A body trickled a byte at a time, each byte well within the idle bound: the whole-request
    // bound ends it.
    let trickle_address = address.clone();
    let trickle_token = token.clone();
    let trickle = tokio::spawn(async move {
        let mut stream = TcpStream::connect(&trickle_address).await.unwrap();
        let body = br#"{"name":"trickled","app":"none"}"#;
        stream
            .write_all(
                format!(
                    "POST /v1/streams HTTP/1.1\r\nHost: {trickle_address}\r\nAuthorization: Bearer {trickle_token}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len() * 100
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let started = Instant::now();
        for byte in body.iter().cycle().take(body.len() * 100) {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            // Not a gate: the trickle itself, one byte per 100 ms, is what the test is about.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&response).into_owned(),
        )
    });

    for (what, stream) in [("silent", &mut silent), ("half header", &mut half_header)] {
        let received = until_closed(stream, bound).await;
        assert!(received.is_some(), "the {what} connection was never closed");
        healthy_fast(&host).await;
    }
    let received = until_closed(&mut idle, bound)
        .await
        .expect("the idle keep-alive connection was never closed");
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    let received = until_closed(&mut short_body, bound)
        .await
        .expect("a body shorter than its Content-Length held the connection");
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(received.contains("body_timeout"), "{received}");
    healthy_fast(&host).await;

    let (took, response) = tokio::time::timeout(Duration::from_secs(20), trickle)
        .await
        .expect("the trickled request was never cut")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("request_timeout"), "{response}");
    assert!(took < Duration::from_secs(6), "cut after {took:?}");
    healthy_fast(&host).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_bound_wait_until_one_closes() {
    let host = Host::start_with(&database_name(), "control-plane-cache", |config| {
        config.server.max_connections = 3;
    })
    .await;
    let address = host.base.trim_start_matches("http://").to_owned();
    // The readiness poll's pooled connection holds a slot: dropping its client closes it.
    let mut host = host;
    host.http = reqwest::Client::new();
    // Three keep-alive connections, each served once (so each holds a slot), then left open.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(15), async {
            let mut buffer = [0u8; 1024];
            while !response.ends_with(b"\r\n\r\nok") {
                let n = stream.read(&mut buffer).await.unwrap();
                assert!(n > 0, "closed early");
                response.extend_from_slice(&buffer[..n]);
            }
        })
        .await
        .expect("each of the first three connections is served");
        held.push(stream);
    }
    let waiting = tokio::spawn({
        let base = host.base.clone();
        async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let response = client.get(format!("{base}/healthz")).send().await.unwrap();
            (response.status(), Instant::now())
        }
    });
    // The fourth is not served while the three are held...
    let early = tokio::time::timeout(Duration::from_millis(700), async {
        while !waiting.is_finished() {
            // Not a gate: proves the fourth is NOT served during the 700 ms window.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "a fourth connection was served past max_connections = 3"
    );
    // ...and is as soon as one of them goes.
    let released = Instant::now();
    drop(held.pop());
    let (status, served) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting connection was served once a slot freed")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(served.duration_since(released) < Duration::from_secs(2));
    drop(held);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_the_operators_and_the_bearer_scheme_is_case_insensitive() {
    let host = Host::start().await;
    let tenant = tenant_id("scheme");
    let token = host.create_tenant(&tenant, None).await;
    let metrics = |token: Option<&str>| host.call(host.request(Method::GET, "/metrics", token));
    let (status, body) = metrics(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = metrics(Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "operator_only");
    let response = host
        .request(Method::GET, "/metrics", Some(OPERATOR))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("mysimbdp_http_requests")
    );

    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let response = host
            .http
            .get(format!("{}/v1/tenant", host.base))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    for bad in [
        format!("Basic {token}"),
        format!("Bearer{token}"),
        "Bearer ".to_owned(),
    ] {
        let (status, _) = host
            .call(
                host.http
                    .get(format!("{}/v1/tenant", host.base))
                    .header("authorization", bad),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    host.stop().await;
}
