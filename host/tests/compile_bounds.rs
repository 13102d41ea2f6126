//! Proves compiling is bounded: checks that need no compiler refuse before compiling, a
//! compile bomb is stopped at the timeout in a killed child process without growing the host,
//! concurrent compiles are capped, and `app check` refuses what upload refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_fixtures as fixtures;
use mysimbdp_tests::prelude::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// The compile timeout of these tests; the bomb compiles far longer (over a minute).
const TIMEOUT_MS: u64 = 2_000;

/// A component exporting the batch-ingest interface name (so it passes every check made
/// before compiling), importing `imports` (empty instances), whose core module is one function
/// of `depth` nested blocks each holding a conditional branch: 140 KB at depth 20,000 keeps
/// Cranelift busy for over a minute (killed by RLIMIT_CPU at 60 s when measured).
fn compile_bomb(depth: usize, imports: &[&str]) -> Vec<u8> {
    let mut body = String::with_capacity(depth * 30);
    for _ in 0..depth {
        body.push_str("block\nlocal.get 0\nbr_if 0\n");
    }
    for _ in 0..depth {
        body.push_str("end\n");
    }
    let imports: String = imports
        .iter()
        .map(|name| format!("(import \"{name}\" (instance))\n"))
        .collect();
    let wat = format!(
        r#"(component
  {imports}
  (core module $m (func (export "f") (param i32) {body}))
  (core instance $i (instantiate $m))
  (func $f (param "x" u32) (canon lift (core func $i "f")))
  (instance $inst (export "run" (func $f)))
  (export "mysimbdp:ingest/batch-ingest@0.1.0" (instance $inst))
)"#
    );
    wat::parse_str(&wat).unwrap()
}

/// Live `__compile` children of this process (the in-process host's compilers).
fn compile_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let dir = entry.path();
            let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                return false;
            };
            // The parent pid is the second field after the parenthesised command name.
            let ppid = stat.rsplit_once(')').map(|(_, rest)| {
                rest.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned()
            });
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            ppid.as_deref() == Some(me.as_str())
                && String::from_utf8_lossy(&cmdline).contains("__compile")
        })
        .count()
}

/// CPU time of this process (every thread) in clock ticks (1/100 s on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

/// These tests count the compile children of the whole test process and its memory: one at
/// a time, so no test sees another's compiler.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The operator's refused import prefixes in these tests (none by default: see
/// `apps.refused_imports`), also written to [`CHECK_CONFIG`] for `app check`.
const REFUSED: &str = "wasi:sockets/";
/// The same `[apps]` rules for `app check --config`.
const CHECK_CONFIG: &str = "[apps]\nrefused_imports = [\"wasi:sockets/\"]\n";

async fn host() -> Host {
    Host::start_with(&database_name(), "compile-bounds-cache", |config| {
        config.sandbox.engine.compile_timeout_ms = TIMEOUT_MS;
        config.sandbox.engine.max_concurrent_compiles = 1;
        config.apps.refused_imports = vec![REFUSED.to_owned()];
    })
    .await
}

#[tokio::test]
async fn a_compile_bomb_is_stopped_at_the_timeout_and_its_compiler_killed() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let host = host().await;
    let token = host.create_tenant("bomber", None).await;
    let rss_before = rss_mib();
    let started = Instant::now();
    let (status, body) = host.upload(&token, "bomb", compile_bomb(20_000, &[])).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["class"], "invalid-component", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("took longer than"), "{message}");
    assert!(took < Duration::from_millis(TIMEOUT_MS + 3_000), "{took:?}");
    // Right after the refusal: the compiler is gone, and the host did not grow.
    assert_eq!(compile_children(), 0, "a compiler outlived the refusal");
    let grown = rss_mib() - rss_before;
    assert!(grown < 200.0, "the host grew by {grown:.0} MiB");
    // Nothing keeps compiling in the host either (an abandoned compile thread would burn
    // about 100 ticks a second).
    let ticks = cpu_ticks();
    // Not a gate: the second is the window being measured (what burns CPU in it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let burnt = cpu_ticks() - ticks;
    assert!(
        burnt < 30,
        "the host burnt {burnt} ticks in the second after the refusal"
    );
    eprintln!(
        "bomb refused in {took:?}; host RSS grew {grown:.1} MiB; {burnt} CPU ticks in the \
         next second"
    );
    host.stop().await;
}

#[tokio::test]
async fn a_refused_import_is_refused_before_compiling() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let host = host().await;
    let token = host.create_tenant("prober", None).await;
    // Compiling this one would take over a minute: a quick refusal proves it was not compiled.
    let bomb = compile_bomb(20_000, &["wasi:sockets/tcp@0.2.6"]);
    let started = Instant::now();
    let (status, body) = host.upload(&token, "spy", bomb).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["class"], "invalid-component", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("wasi:sockets/tcp@0.2.6"), "{message}");
    assert!(message.contains("apps.refused_imports"), "{message}");
    assert!(took < Duration::from_millis(TIMEOUT_MS / 2), "{took:?}");
    eprintln!("refused import refused in {took:?}");
    host.stop().await;
}

#[tokio::test]
async fn app_check_refuses_what_upload_refuses_with_the_same_reason() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The default compile timeout: the probe case must compile (on a busy machine too).
    let host = Host::start_with(&database_name(), "compile-bounds-cache", |config| {
        config.apps.refused_imports = vec![REFUSED.to_owned()];
    })
    .await;
    let token = host.create_tenant("checker", None).await;
    // An import the operator refuses (found before compiling), a failure of the admission
    // probe (an app that panics on every input), and an upload under a preset that does not
    // exist: each refused by both with the same reason.
    let cases = [
        (fixtures::EVIL_ESCAPE, None, "apps.refused_imports"),
        (fixtures::EVIL_PANIC, None, "admission probe"),
        (fixtures::CSV_BATCH, Some("cobol"), "not offered"),
    ];
    let mut reasons = Vec::new();
    for (path, preset, expected) in cases {
        let query = preset.map_or(String::new(), |p| format!("?preset={p}"));
        let (status, body) = host
            .call(
                host.request(
                    reqwest::Method::PUT,
                    &format!("/v1/apps/case{query}"),
                    Some(&token),
                )
                .header("content-type", "application/wasm")
                .body(read(path)),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        let reason = body["error"]["message"].as_str().unwrap().to_owned();
        assert!(reason.contains(expected), "{path}: {reason}");
        reasons.push(reason);
    }
    host.stop().await;

    let config = scratch("compile-bounds-check").join("apps.toml");
    std::fs::write(&config, CHECK_CONFIG).unwrap();
    for ((path, preset, _), reason) in cases.iter().zip(&reasons) {
        let mut args = vec!["app", "check", path, "--config", config.to_str().unwrap()];
        if let Some(preset) = preset {
            args.extend(["--preset", preset]);
        }
        let output = mysimbdp_tests::cli::async_command()
            .args(&args)
            .env("MYSIMBDP_CACHE_DIR", scratch("compile-bounds-cache"))
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "app check passed {path}: {stderr}"
        );
        let one_line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(stderr.contains(&one_line), "{one_line:?} not in: {stderr}");
    }
}

#[tokio::test]
async fn concurrent_compiles_are_capped_and_the_next_upload_waits() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let host = host().await;
    let token = host.create_tenant("crowd", None).await;
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = {
        let watching = watching.clone();
        tokio::task::spawn_blocking(move || {
            let mut most = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(compile_children());
                // Not a gate: the sampling rate of the watcher, which runs until told to stop.
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        })
    };
    let started = Instant::now();
    let (first, second) = tokio::join!(
        host.upload(&token, "one", compile_bomb(20_000, &[])),
        host.upload(&token, "two", compile_bomb(20_001, &[])),
    );
    let took = started.elapsed();
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = watch.await.unwrap();
    for (status, body) in [first, second] {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("took longer than"), "{message}");
    }
    // One compiler at a time: the second upload waited for the first's slot.
    assert_eq!(most, 1, "compilers alive at once");
    assert!(took >= Duration::from_millis(2 * TIMEOUT_MS), "{took:?}");
    assert_eq!(compile_children(), 0);
    eprintln!("two bombs refused one after the other in {took:?}");
    host.stop().await;
}
