//! Files the tests use: where the build put the `mysimbdp` binary, scratch directories under
//! the target directory, and fixture bytes.

use mysimbdp_fixtures as fixtures;
use std::path::{Path, PathBuf};

/// The profile directory (`target/debug`, `target/release`) of the running test or
/// benchmark: its binary sits in `<profile>/deps`. Cargo hands the binary's path and the
/// scratch directory only to the test crate itself (`env!("CARGO_BIN_EXE_…")`), so support
/// code finds them from here; a host test checks both against Cargo's values.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let profile = if deps.ends_with("deps") {
        deps.parent().unwrap()
    } else {
        deps
    };
    profile.to_path_buf()
}

/// The built `mysimbdp` binary (Cargo builds it before the host's tests and benchmarks).
pub fn mysimbdp_binary() -> PathBuf {
    profile_dir().join(format!("mysimbdp{}", std::env::consts::EXE_SUFFIX))
}

/// The scratch root Cargo gives integration tests (`CARGO_TARGET_TMPDIR`, `target/tmp`).
pub fn target_tmpdir() -> PathBuf {
    profile_dir()
        .parent()
        .map(|target| target.join("tmp"))
        .unwrap()
}

/// A scratch directory under the target's `tmp`, created.
pub fn scratch(name: &str) -> PathBuf {
    let dir = target_tmpdir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `target/bench`, created: where benchmarks keep their configs, caches and reports.
pub fn bench_dir() -> PathBuf {
    let dir = target_tmpdir().parent().unwrap().join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file's bytes, or a panic naming it.
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A small orders CSV and what ingesting it must produce.
pub fn orders_csv() -> (String, fixtures::orders::Expected) {
    let (bytes, expected) = fixtures::orders::generate(16 * 1024, 10);
    (String::from_utf8(bytes).unwrap(), expected)
}

/// The Python and JavaScript sample apps, built by `scripts/build-lang-apps` (which skips
/// builds whose inputs did not change) into `target/lang-apps`, once per process: returns
/// that directory, holding `{python,js}-{csv-batch,json-stream}.wasm`. The toolchains come
/// from scripts/setup.
pub fn lang_apps() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = target_tmpdir().parent().unwrap().to_path_buf();
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = std::process::Command::new("bash")
                .arg(root.join("scripts/build-lang-apps"))
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("running scripts/build-lang-apps");
            assert!(
                status.success(),
                "scripts/build-lang-apps failed (the toolchains come from scripts/setup)"
            );
            target.join("lang-apps")
        })
        .clone()
}
