//! Proves `mysimbdp app new` writes Python and JavaScript batch projects that build with the
//! one command their README documents, pass `app check`, and run on their bundled sample.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_host::cli::new::{Kind, Lang, build_command};
use mysimbdp_tests::files::{scratch, target_tmpdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mysimbdp(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mysimbdp"))
        .current_dir(dir)
        .args(args)
        .env("MYSIMBDP_CACHE_DIR", target_tmpdir().join("app-new-cache"))
        .env("RUST_LOG", "error")
        .output()
        .expect("running mysimbdp")
}

fn assert_ok(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates the project, builds it with the README's command, checks and runs it; returns
/// the documents `app run` printed.
fn new_build_check_run(lang: Lang, flag: &str) -> Vec<serde_json::Value> {
    let parent = scratch(&format!("app-new-{flag}-{}", std::process::id()));
    let dir = parent.join("my-app");
    let _ = std::fs::remove_dir_all(&dir);
    assert_ok(
        "app new",
        &mysimbdp(
            &parent,
            &["app", "new", "my-app", "--lang", flag, "--kind", "batch"],
        ),
    );
    let command = build_command(lang, Kind::Batch);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains(&command),
        "the README documents {command:?}"
    );

    // The toolchains scripts/setup installed stand in for the developer's own install.
    let path = format!(
        "{}:{}",
        root().join(".tools/venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    if lang == Lang::Js {
        std::os::unix::fs::symlink(
            root().join("sdk-guest/js/node_modules"),
            dir.join("node_modules"),
        )
        .unwrap();
    }
    let build = Command::new("bash")
        .args(["-c", &command])
        .current_dir(&dir)
        .env("PATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert_ok(&format!("building with {command:?}"), &build);

    // Room to compile a 12-18 MB component on a loaded machine; admission is the default's.
    let config = dir.join("local.toml");
    std::fs::write(&config, "[sandbox.engine]\ncompile_timeout_ms = 300000\n").unwrap();
    let config = config.to_str().unwrap();
    assert_ok(
        "app check",
        &mysimbdp(
            &dir,
            &[
                "app", "check", "app.wasm", "--config", config, "--preset", flag,
            ],
        ),
    );
    let run = mysimbdp(
        &dir,
        &[
            "app",
            "run",
            "app.wasm",
            "--input",
            "sample.csv",
            "--config",
            config,
            "--preset",
            flag,
        ],
    );
    assert_ok("app run", &run);
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn assert_sample_documents(documents: &[serde_json::Value]) {
    let names: Vec<&str> = documents
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    // The third record has two fields for three columns: counted bad, not stored.
    assert_eq!(names, ["first", "second", "fourth"]);
    assert_eq!(documents[0]["amount"], "12.5");
    assert!(documents.iter().all(|d| d["_id"].is_string()));
}

#[test]
fn a_new_python_batch_app_builds_checks_and_runs() {
    assert_sample_documents(&new_build_check_run(Lang::Python, "python"));
}

#[test]
fn a_new_js_batch_app_builds_checks_and_runs() {
    assert_sample_documents(&new_build_check_run(Lang::Js, "js"));
}
