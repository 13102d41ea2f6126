//! Services a test owns, for fault tests that must not disturb the shared ones other tests
//! use: a Redis, an etcd or a MongoDB replica set of its own, on a port of its own, which the
//! test kills (SIGKILL), restarts with its data or empty, and waits for to answer again.

use crate::poll::wait_until;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A TCP port nothing listens on now (the OS picked it; a race with another process taking
/// it before the service binds is possible but unlikely on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory of the test's own for a service's data, emptied first.
fn data_dir(kind: &str, port: u16) -> PathBuf {
    let dir = crate::files::scratch("owned-services").join(format!("{kind}-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Kills `child` with SIGKILL and reaps it.
async fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill().await;
    }
}

/// Waits until nothing listens on `port` any more (a killed server's socket is gone).
async fn wait_closed(port: u16, what: &str) {
    wait_until(
        &format!("{what} on port {port} is gone"),
        Duration::from_secs(10),
        async || port_open(port).await,
        |open| !open,
    )
    .await;
}

/// A Redis of the test's own.
pub struct OwnedRedis {
    pub port: u16,
    dir: PathBuf,
    /// Whether it keeps an append-only file (fsync every second), so a restart finds its data.
    aof: bool,
    child: Option<Child>,
}

impl OwnedRedis {
    /// Starts one, with an append-only file when `aof`.
    pub async fn start(aof: bool) -> Self {
        let port = free_port();
        let mut redis = Self {
            port,
            dir: data_dir("redis", port),
            aof,
            child: None,
        };
        redis.spawn().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "everysec"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian's redis-server) is installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        wait_until(
            &format!("the test's Redis on port {} answers", self.port),
            Duration::from_secs(20),
            async || match client.get_multiplexed_async_connection().await {
                Ok(mut c) => redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok(),
                Err(_) => false,
            },
            |up| *up,
        )
        .await;
    }

    /// Kills it (SIGKILL): what was not yet in its append-only file is lost.
    pub async fn kill(&mut self) {
        kill(&mut self.child).await;
        wait_closed(self.port, "Redis").await;
    }

    /// Starts it again on the same port, with whatever its append-only file kept.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// Starts it again on the same port with nothing: every key is gone.
    pub async fn restart_empty(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).unwrap();
        self.spawn().await;
    }

    /// A connection to it.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// An etcd of the test's own.
pub struct OwnedEtcd {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnedEtcd {
    /// Starts one (its peer port is another free port).
    pub async fn start() -> Self {
        let port = free_port();
        let mut etcd = Self {
            port,
            dir: data_dir("etcd", port),
            child: None,
        };
        etcd.spawn().await;
        etcd
    }

    /// Its client endpoint.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", free_port());
        let client = format!("http://127.0.0.1:{}", self.port);
        let child = Command::new("etcd")
            .args(["--name", "owned", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("owned={peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("etcd (Debian's etcd-server) is installed");
        self.child = Some(child);
        let endpoint = self.endpoint();
        wait_until(
            &format!("the test's etcd on port {} answers", self.port),
            Duration::from_secs(30),
            async || match etcd_client::Client::connect([endpoint.as_str()], None).await {
                Ok(mut c) => c.get("health-probe", None).await.is_ok(),
                Err(_) => false,
            },
            |up| *up,
        )
        .await;
    }

    /// Kills it (SIGKILL); its data stays for [`OwnedEtcd::restart`].
    pub async fn kill(&mut self) {
        kill(&mut self.child).await;
        wait_closed(self.port, "etcd").await;
    }

    /// Starts it again with its data (a new peer port: the member keeps its identity).
    pub async fn restart(&mut self) {
        self.spawn().await;
    }
}

/// The `mongod` that `scripts/services up` unpacked from the wheel.
pub fn mongod_binary() -> PathBuf {
    let state = std::env::var_os("MYSIMBDP_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".local/share/mysimbdp-services")
        });
    let binary = state.join("mongodb/bin/mongod");
    assert!(
        binary.exists(),
        "{} is missing: run scripts/services up",
        binary.display()
    );
    binary
}

/// A MongoDB single-node replica set of the test's own.
pub struct OwnedMongo {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnedMongo {
    /// Starts one and waits until it is a writable primary.
    pub async fn start() -> Self {
        let port = free_port();
        let mut mongo = Self {
            port,
            dir: data_dir("mongod", port),
            child: None,
        };
        mongo.spawn().await;
        let direct = mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=20000"
        ))
        .await
        .unwrap();
        direct
            .database("admin")
            .run_command(mongodb::bson::doc! {
                "replSetInitiate": {
                    "_id": mongo.replica_set(),
                    "members": [{ "_id": 0, "host": format!("127.0.0.1:{port}") }],
                }
            })
            .await
            .unwrap();
        mongo.wait_primary().await;
        mongo
    }

    fn replica_set(&self) -> String {
        format!("owned{}", self.port)
    }

    /// Its URI, as hosts are given it.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?replicaSet={}&serverSelectionTimeoutMS=10000",
            self.port,
            self.replica_set()
        )
    }

    /// A client of it.
    pub async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(self.uri()).await.unwrap()
    }

    async fn spawn(&mut self) {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let child = Command::new(mongod_binary())
            .args(["--bind_ip", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dbpath")
            .arg(&data)
            .args(["--replSet", &self.replica_set()])
            .arg("--logpath")
            .arg(self.dir.join("mongod.log"))
            .args(["--wiredTigerCacheSizeGB", "0.25"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_until(
            &format!("the test's mongod on port {port} listens"),
            Duration::from_secs(60),
            async || port_open(port).await,
            |open| *open,
        )
        .await;
    }

    async fn wait_primary(&self) {
        let direct = mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=2000",
            self.port
        ))
        .await
        .unwrap();
        wait_until(
            &format!("the test's mongod on port {} is primary", self.port),
            Duration::from_secs(60),
            async || {
                direct
                    .database("admin")
                    .run_command(mongodb::bson::doc! { "hello": 1 })
                    .await
                    .ok()
                    .and_then(|hello| hello.get_bool("isWritablePrimary").ok())
                    .unwrap_or(false)
            },
            |primary| *primary,
        )
        .await;
    }

    /// Kills it (SIGKILL); its data (journaled) stays for [`OwnedMongo::restart`].
    pub async fn kill(&mut self) {
        kill(&mut self.child).await;
        wait_closed(self.port, "mongod").await;
    }

    /// Starts it again with its data and waits until it is primary.
    pub async fn restart(&mut self) {
        self.spawn().await;
        self.wait_primary().await;
    }
}

/// Kills the service (if it still runs) and removes its data: fault tests leave nothing.
macro_rules! clean_up_on_drop {
    ($($owned:ty),*) => {$(
        impl Drop for $owned {
            fn drop(&mut self) {
                if let Some(child) = self.child.as_mut() {
                    let _ = child.start_kill();
                }
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    )*};
}

clean_up_on_drop!(OwnedRedis, OwnedEtcd, OwnedMongo);
