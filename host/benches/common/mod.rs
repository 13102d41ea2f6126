//! What the end-to-end benchmarks share: a real `serve` process on a config of their own,
//! the shared MongoDB, and peak RSS readings.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncBufReadExt;

/// The operator token of benchmark hosts.
pub const OPERATOR: &str = "bench-operator-token-0123456789abcdef";

/// `target/bench`, created.
pub fn bench_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Peak resident set size of a process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The shared MongoDB.
pub async fn mongo() -> mongodb::Client {
    mongodb::Client::with_uri_str(mysimbdp_tests::MONGODB_URI)
        .await
        .unwrap()
}

/// Starts `mysimbdp serve` on `config` (TOML text) and returns it with its API's base URL.
/// Its log goes to this process's stderr when `echo`.
pub async fn serve(run: &str, config: &str, echo: bool) -> (tokio::process::Child, String) {
    let dir = bench_dir();
    let path = dir.join(format!("{run}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mysimbdp"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
        .env("MYSIMBDP_LISTEN", "127.0.0.1:0")
        .env("MYSIMBDP_CACHE_DIR", dir.join("cache"))
        .env("RUST_LOG", "warn,mysimbdp_host::serve=info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next_line().await.unwrap().expect("serve exited");
        if let Some(at) = line.find("listening on ") {
            break line[at + 13..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("serve: {line}");
            }
        }
    });
    (child, base)
}
