//! A real `mysimbdp serve` process, as the integration tests and the benchmarks start it: its
//! address read from its log, the log kept draining so it never blocks on a full pipe.

use crate::files::{bench_dir, mysimbdp_binary, scratch};
use crate::host::OPERATOR;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// A real `mysimbdp serve` process.
pub struct Process {
    pub child: Child,
    pub base: String,
    /// Its log lines so far (stderr).
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A real `serve` on the test's own registry prefix, queue namespace and staging directory.
pub async fn spawn_serve(database: &str, cache: &str) -> Process {
    spawn_serve_with(database, cache, "", "").await
}

/// A real `serve` on the test's own registry prefix, queue namespace and staging directory,
/// with extra keys for its `[registry]` and `[batch]` tables.
pub async fn spawn_serve_with(
    database: &str,
    cache: &str,
    registry_extra: &str,
    batch_extra: &str,
) -> Process {
    spawn_serve_at(
        &Endpoints::shared(),
        database,
        cache,
        registry_extra,
        batch_extra,
    )
    .await
}

/// Where a `serve` finds its services: the shared ones, or ones a fault test owns.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Its platform database's server, also its shared coredms.
    pub mongodb_uri: String,
    /// Its Redis.
    pub redis_url: String,
    /// Its etcd.
    pub etcd_endpoint: String,
}

impl Endpoints {
    /// The services `scripts/services up` started.
    pub fn shared() -> Self {
        Self {
            mongodb_uri: crate::services::MONGODB_URI.to_owned(),
            redis_url: crate::services::REDIS_URL.to_owned(),
            etcd_endpoint: crate::services::ETCD_ENDPOINT.to_owned(),
        }
    }
}

/// A real `serve` on `endpoints`, with the test's own registry prefix, queue namespace and
/// staging directory and extra keys for its `[registry]` and `[batch]` tables.
pub async fn spawn_serve_at(
    endpoints: &Endpoints,
    database: &str,
    cache: &str,
    registry_extra: &str,
    batch_extra: &str,
) -> Process {
    let config = scratch("configs").join(format!("{database}-{cache}.toml"));
    std::fs::write(
        &config,
        format!(
            "[registry]\nprefix = \"/mysimbdp-test/{database}\"\n{registry_extra}\n\
             [redis]\nnamespace = \"{database}\"\n\
             [batch]\nstaging_dir = {:?}\n{batch_extra}\n",
            scratch("staging").join(database)
        ),
    )
    .unwrap();
    let mut command = Command::new(mysimbdp_binary());
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("MYSIMBDP_OPERATOR_TOKEN", OPERATOR)
        .env("MYSIMBDP_LISTEN", "127.0.0.1:0")
        .env("MYSIMBDP_PLAIN_HTTP", "true")
        .env("MYSIMBDP_MONGODB_URI", &endpoints.mongodb_uri)
        .env("MYSIMBDP_SINK_MONGODB_URI", &endpoints.mongodb_uri)
        .env("MYSIMBDP_REDIS_URL", &endpoints.redis_url)
        .env("MYSIMBDP_PLATFORM_DATABASE", database)
        .env("MYSIMBDP_CACHE_DIR", scratch(cache))
        .env("MYSIMBDP_ETCD_ENDPOINTS", &endpoints.etcd_endpoint)
        .env("RUST_LOG", "info");
    let (child, base, mut lines) = start(command).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Process { child, base, log }
}

/// The operator token of benchmark hosts.
pub const BENCH_OPERATOR: &str = "bench-operator-token-0123456789abcdef";

/// A benchmark's `serve` on `config` (TOML text, kept as `target/bench/<run>.toml`), with
/// its API's base URL. Its log goes to this process's stderr when `echo`.
pub async fn serve_bench(run: &str, config: &str, echo: bool) -> (Child, String) {
    let dir = bench_dir();
    let path = dir.join(format!("{run}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(mysimbdp_binary());
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("MYSIMBDP_OPERATOR_TOKEN", BENCH_OPERATOR)
        .env("MYSIMBDP_LISTEN", "127.0.0.1:0")
        .env("MYSIMBDP_PLAIN_HTTP", "true")
        .env("MYSIMBDP_CACHE_DIR", dir.join("cache"))
        .env("RUST_LOG", "warn,mysimbdp_host::serve=info");
    let (child, base, mut lines) = start(command).await;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("serve: {line}");
            }
        }
    });
    (child, base)
}

/// Spawns `command` (a `serve`) and reads its log up to the `listening on <address>` line.
/// The caller keeps draining the rest of the log.
async fn start(mut command: Command) -> (Child, String, Lines<BufReader<ChildStderr>>) {
    let mut child = command
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("listening on ") {
                let rest = &line[at + "listening on ".len()..];
                return rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        panic!("serve exited before listening");
    })
    .await
    .expect("serve starts within a minute");
    (child, base, lines)
}

impl Process {
    /// Stops it with SIGTERM and checks it exits cleanly.
    pub async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("serve stops on SIGTERM")
            .unwrap();
        assert!(exit.success(), "serve exited with {exit}");
    }
}

/// A process's peak resident set size (VmHWM), in KiB; 0 when unreadable.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let kib = vm_hwm_kib(pid);
    assert!(kib > 0, "no VmHWM for process {pid}");
    kib / 1024
}
