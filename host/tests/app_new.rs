//! Proves `mysimbdp app new` writes Python and JavaScript projects, batch and stream, that a
//! new user takes to documents in MongoDB by running exactly the commands of the project's
//! README: build, `app check`, `app run` on the bundled sample, upload with the language's
//! preset and the sample probe, then `batch upload --wait` or a stream fed by
//! `stream publish`, against a real platform.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_host::cli::new::{Kind, Lang, build_command};
use mysimbdp_tests::files::{scratch, target_tmpdir};
use mysimbdp_tests::prelude::*;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn assert_ok(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The shell commands of a README, in order: every line of its ```sh blocks, except the
/// `export` of the platform's address and token (the test sets those to its own host).
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_block = true,
            "```" => in_block = false,
            command if in_block && !command.is_empty() && !command.starts_with("export ") => {
                commands.push(command.to_owned());
            }
            _ => {}
        }
    }
    commands
}

/// The environment of a new user's shell: `mysimbdp` and the language toolchains on the
/// PATH (those scripts/setup installed stand in for the user's own), the platform's address
/// and the tenant's token.
struct Shell {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Shell {
    async fn run(&self, command: &str) -> Output {
        let mut child = tokio::process::Command::new("bash");
        child.args(["-c", command]).current_dir(&self.dir);
        for (name, value) in &self.env {
            child.env(name, value);
        }
        let output = child.output().await.unwrap();
        assert_ok(command, &output);
        output
    }
}

/// `app new`, then every command of the project's README against `host` as `tenant`;
/// returns the documents `app run` printed.
async fn follow_the_readme(
    host: &Host,
    token: &str,
    lang: Lang,
    flag: &str,
    kind: (Kind, &str),
) -> Vec<Value> {
    let parent = scratch(&format!("app-new-{flag}-{}-{}", kind.1, std::process::id()));
    let dir = parent.join("my-app");
    let _ = std::fs::remove_dir_all(&dir);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_mysimbdp"));
    // Room to compile a 12-18 MB component on a loaded machine; the rest is the default's.
    let config = parent.join("local.toml");
    std::fs::write(&config, "[sandbox.engine]\ncompile_timeout_ms = 300000\n").unwrap();
    let path = format!(
        "{}:{}:{}",
        binary.parent().unwrap().display(),
        root().join(".tools/venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let shell = Shell {
        dir: parent.clone(),
        env: vec![
            ("PATH", path),
            ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
            ("MYSIMBDP_API", host.base.clone()),
            ("MYSIMBDP_TOKEN", token.to_owned()),
            ("MYSIMBDP_CONFIG", config.display().to_string()),
            (
                "MYSIMBDP_CACHE_DIR",
                target_tmpdir().join("app-new-cache").display().to_string(),
            ),
            ("RUST_LOG", "error".to_owned()),
        ],
    };
    shell
        .run(&format!(
            "mysimbdp app new my-app --lang {flag} --kind {}",
            kind.1
        ))
        .await;
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    let build = build_command(lang, kind.0);
    assert_eq!(commands[0], build, "the README's first command builds");
    assert!(
        commands.iter().any(|c| c.contains("app upload")),
        "{readme}"
    );
    if lang == Lang::Js {
        // `npm ci` from the registry, as the README says, is what scripts/setup did for the
        // SDK's own package: the same packages, already here.
        std::os::unix::fs::symlink(
            root().join("sdk-guest/js/node_modules"),
            dir.join("node_modules"),
        )
        .unwrap();
    }
    let shell = Shell { dir, ..shell };
    let mut documents = Vec::new();
    for command in &commands {
        let output = shell.run(command).await;
        if command.starts_with("mysimbdp app run") {
            documents = String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
        }
    }
    documents
}

async fn documents_of(tenant: &str, collection: &str, count: u64) -> Vec<Value> {
    use futures_util::TryStreamExt;
    let documents = mysimbdp_tests::services::tenant_collection(tenant, collection).await;
    wait_until(
        &format!("{tenant}/{collection} holds {count} documents"),
        Duration::from_secs(120),
        async || {
            documents
                .count_documents(mongodb::bson::doc! {})
                .await
                .unwrap()
        },
        |n| *n >= count,
    )
    .await;
    let found: Vec<mongodb::bson::Document> = documents
        .find(mongodb::bson::doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found.len() as u64, count, "{found:?}");
    found
        .into_iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect()
}

async fn new_app_reaches_mongodb(lang: Lang, flag: &str, kind: Kind) {
    let database = database_name();
    let host = Host::start_with(&database, "app-new-host-cache", |config| {
        config.sandbox.engine.compile_timeout_ms = 300_000;
        // The cache `app check` filled: the upload finds the component compiled.
        config.sandbox.engine.cache_dir = Some(target_tmpdir().join("app-new-cache"));
        config.stream.reconcile_ms = 200;
    })
    .await;
    let tenant = unique(&format!("new-{flag}"));
    let token = host.create_tenant(&tenant, None).await;
    match kind {
        Kind::Batch => {
            let printed = follow_the_readme(&host, &token, lang, flag, (kind, "batch")).await;
            let names = |documents: &[Value]| {
                let mut names: Vec<String> = documents
                    .iter()
                    .map(|d| d["name"].as_str().unwrap().to_owned())
                    .collect();
                names.sort();
                names
            };
            // The third record has two fields for three columns: counted bad, not stored.
            assert_eq!(names(&printed), ["first", "fourth", "second"]);
            assert_eq!(printed[0]["amount"], "12.5");
            // `batch upload --wait` returned: the job is done and its documents are stored.
            let stored = documents_of(&tenant, "documents", 3).await;
            assert_eq!(names(&stored), names(&printed));
            let (_, jobs) = host
                .tenant(&token, Method::GET, "/v1/batch/jobs", None)
                .await;
            assert_eq!(jobs[0]["status"], "done", "{jobs}");
        }
        Kind::Stream => {
            let printed = follow_the_readme(&host, &token, lang, flag, (kind, "stream")).await;
            assert_eq!(printed.len(), 2, "{printed:?}");
            let stored = documents_of(&tenant, "messages", 2).await;
            let mut texts: Vec<&str> = stored.iter().map(|d| d["text"].as_str().unwrap()).collect();
            texts.sort_unstable();
            assert_eq!(texts, ["hello", "world"]);
            let letters = wait_until(
                "the rejected line is dead-lettered",
                Duration::from_secs(60),
                async || {
                    host.tenant(
                        &token,
                        Method::GET,
                        "/v1/streams/my-app/dead-letters?limit=10",
                        None,
                    )
                    .await
                    .1
                },
                |letters| letters.as_array().is_some_and(|l| l.len() == 1),
            )
            .await;
            assert_eq!(letters[0]["class"], "reject", "{letters}");
            assert!(
                letters[0]["payload"].as_str().unwrap().contains("not json"),
                "{letters}"
            );
        }
    }
    host.delete_tenant(&tenant).await;
    drop_database(&tenant_database(&tenant)).await;
    host.stop().await;
    drop_database(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_batch_app_follows_its_readme_into_mongodb() {
    new_app_reaches_mongodb(Lang::Python, "python", Kind::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_js_batch_app_follows_its_readme_into_mongodb() {
    new_app_reaches_mongodb(Lang::Js, "js", Kind::Batch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_stream_app_follows_its_readme_into_mongodb() {
    new_app_reaches_mongodb(Lang::Python, "python", Kind::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_js_stream_app_follows_its_readme_into_mongodb() {
    new_app_reaches_mongodb(Lang::Js, "js", Kind::Stream).await;
}
