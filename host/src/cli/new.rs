//! `mysimbdp app new`: writes a ready-to-build app project (Rust, Python or JavaScript; batch
//! or stream) from templates embedded in this binary, with the WIT contract and, for Python
//! and JavaScript, the guest SDK vendored into the project.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The language of a new app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the `mysimbdp-sdk` crate (`cargo build --target wasm32-wasip2`).
    Rust,
    /// Python with the `mysimbdp` package (componentize-py).
    Python,
    /// JavaScript with the `mysimbdp` modules (componentize-js).
    Js,
}

/// The kind of a new app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A batch app: turns staged files into documents.
    Batch,
    /// A stream app: turns broker messages into documents.
    Stream,
}

/// Arguments of `app new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The app's name (letters, digits, `-` and `_`); also the project directory's name.
    pub name: String,
    /// The language to write the app in.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Batch or stream app.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where to create the project (default: ./NAME). It must not exist yet.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Rust SDK crate a Rust project depends on by path (default: the `sdk-guest` of the
    /// source tree this binary was built from).
    #[arg(long)]
    pub rust_sdk: Option<PathBuf>,
}

/// A file of the project: its path inside the project and its text (before substitution).
type File = (&'static str, &'static str);

/// The WIT contract, as the project builds against it.
const WIT: &[File] = &[
    ("wit/batch.wit", include_str!("../../../wit/batch.wit")),
    ("wit/host.wit", include_str!("../../../wit/host.wit")),
    ("wit/stream.wit", include_str!("../../../wit/stream.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
];

/// The Python SDK, vendored as the package `mysimbdp`.
const PYTHON_SDK: &[File] = &[
    (
        "mysimbdp/__init__.py",
        include_str!("../../../sdk-guest/python/mysimbdp/__init__.py"),
    ),
    (
        "mysimbdp/_errors.py",
        include_str!("../../../sdk-guest/python/mysimbdp/_errors.py"),
    ),
    (
        "mysimbdp/_json.py",
        include_str!("../../../sdk-guest/python/mysimbdp/_json.py"),
    ),
    (
        "mysimbdp/_output.py",
        include_str!("../../../sdk-guest/python/mysimbdp/_output.py"),
    ),
    (
        "mysimbdp/_quality.py",
        include_str!("../../../sdk-guest/python/mysimbdp/_quality.py"),
    ),
    (
        "mysimbdp/batch.py",
        include_str!("../../../sdk-guest/python/mysimbdp/batch.py"),
    ),
    (
        "mysimbdp/log.py",
        include_str!("../../../sdk-guest/python/mysimbdp/log.py"),
    ),
    (
        "mysimbdp/params.py",
        include_str!("../../../sdk-guest/python/mysimbdp/params.py"),
    ),
    (
        "mysimbdp/stream.py",
        include_str!("../../../sdk-guest/python/mysimbdp/stream.py"),
    ),
];

/// The JavaScript SDK and its build script, vendored under `sdk/`.
const JS_SDK: &[File] = &[
    (
        "sdk/build.mjs",
        include_str!("../../../sdk-guest/js/build.mjs"),
    ),
    (
        "sdk/src/batch.js",
        include_str!("../../../sdk-guest/js/src/batch.js"),
    ),
    (
        "sdk/src/csv.js",
        include_str!("../../../sdk-guest/js/src/csv.js"),
    ),
    (
        "sdk/src/errors.js",
        include_str!("../../../sdk-guest/js/src/errors.js"),
    ),
    (
        "sdk/src/index.js",
        include_str!("../../../sdk-guest/js/src/index.js"),
    ),
    (
        "sdk/src/json.js",
        include_str!("../../../sdk-guest/js/src/json.js"),
    ),
    (
        "sdk/src/log.js",
        include_str!("../../../sdk-guest/js/src/log.js"),
    ),
    (
        "sdk/src/output.js",
        include_str!("../../../sdk-guest/js/src/output.js"),
    ),
    (
        "sdk/src/params.js",
        include_str!("../../../sdk-guest/js/src/params.js"),
    ),
    (
        "sdk/src/quality.js",
        include_str!("../../../sdk-guest/js/src/quality.js"),
    ),
    (
        "sdk/src/stream.js",
        include_str!("../../../sdk-guest/js/src/stream.js"),
    ),
    (
        "sdk/src/utf8.js",
        include_str!("../../../sdk-guest/js/src/utf8.js"),
    ),
    ("package.json", include_str!("templates/js/package.json")),
    // The lock of the SDK's own build tools: `npm ci` installs exactly what CI tests with.
    (
        "package-lock.json",
        include_str!("../../../sdk-guest/js/package-lock.json"),
    ),
];

const README: &str = include_str!("templates/README.md");
/// A Rust project's manifest (it depends on the Rust SDK by path).
const RUST_PROJECT: &[File] = &[("Cargo.toml", include_str!("templates/rust/Cargo.toml"))];

const SAMPLE_CSV: &str = include_str!("templates/sample.csv");
const SAMPLE_JSONL: &str = include_str!("templates/sample.jsonl");

/// The build command a project's README documents (and the scaffolding test runs).
pub fn build_command(lang: Lang, kind: Kind) -> String {
    let world = match kind {
        Kind::Batch => "batch-app",
        Kind::Stream => "stream-app",
    };
    match lang {
        Lang::Rust => "cargo build --target wasm32-wasip2 --release && \
                       cp target/wasm32-wasip2/release/*.wasm app.wasm"
            .to_owned(),
        Lang::Python => {
            format!("componentize-py -d wit -w {world} componentize -p . app -o app.wasm")
        }
        Lang::Js => "npm run build".to_owned(),
    }
}

/// Every file of a new project, with `{{…}}` placeholders filled in.
pub fn project_files(args: &NewArgs) -> Result<Vec<(String, String)>> {
    let name = &args.name;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with('-')
    {
        bail!(
            "app name {name:?}: use 1 to 64 ASCII letters, digits, '-' or '_', not starting with '-'"
        );
    }
    // What a project of each language needs besides its main file.
    let (language, setup, main_file, sdk): (_, _, _, &[File]) = match args.lang {
        Lang::Python => (
            "Python",
            "once, `pip install componentize-py==0.25.1`",
            "app.py",
            PYTHON_SDK,
        ),
        Lang::Js => (
            "JavaScript",
            "once, `npm ci` (Node.js 20)",
            "app.js",
            JS_SDK,
        ),
        Lang::Rust => (
            "Rust",
            "once, `rustup target add wasm32-wasip2`",
            "src/lib.rs",
            RUST_PROJECT,
        ),
    };
    let main_text = match (args.lang, args.kind) {
        (Lang::Python, Kind::Batch) => include_str!("templates/python/batch.py"),
        (Lang::Python, Kind::Stream) => include_str!("templates/python/stream.py"),
        (Lang::Js, Kind::Batch) => include_str!("templates/js/batch.js"),
        (Lang::Js, Kind::Stream) => include_str!("templates/js/stream.js"),
        (Lang::Rust, Kind::Batch) => include_str!("templates/rust/batch.rs"),
        (Lang::Rust, Kind::Stream) => include_str!("templates/rust/stream.rs"),
    };
    let (kind, sample, sample_text) = match args.kind {
        Kind::Batch => ("batch", "sample.csv", SAMPLE_CSV),
        Kind::Stream => ("stream", "sample.jsonl", SAMPLE_JSONL),
    };
    // Interpreted apps need the limits of their language's preset (see the docs), locally
    // and at upload.
    let limits = match args.lang {
        Lang::Rust => "",
        Lang::Python => " --preset python",
        Lang::Js => " --preset js",
    };
    let platform = match args.kind {
        Kind::Batch => format!(
            "Upload the app (it runs on the sample under the limits it will run with, and the \
             upload is\nrefused if it fails there), then ingest a file and wait for its job:\n\n\
             ```sh\n\
             mysimbdp app upload {name} app.wasm{limits} --sample {sample}\n\
             mysimbdp batch upload --app {name} {sample} --wait\n\
             ```\n\n\
             The documents are in your database's `documents` collection; read two back through \
             the\ndaas API:\n\n\
             ```sh\n\
             curl -fsS -H \"Authorization: Bearer $MYSIMBDP_TOKEN\" \"$MYSIMBDP_API/v1/data/documents?limit=2\"\n\
             ```\n\n\
             `mysimbdp batch jobs` lists your jobs, `mysimbdp batch stats` your figures.\n"
        ),
        Kind::Stream => format!(
            "Upload the app (it runs on the sample under the limits it will run with, and the \
             upload is\nrefused if it fails there; a message it rejects is fine), create a \
             stream it consumes, and\npublish the sample's lines to it as messages:\n\n\
             ```sh\n\
             mysimbdp app upload {name} app.wasm{limits} --sample {sample}\n\
             mysimbdp stream create {name} --app {name} --collection messages\n\
             mysimbdp stream publish --stream {name} {sample}\n\
             ```\n\n\
             The documents arrive in your database's `messages` collection; the message the app \
             rejects\n(`not json`) waits in the stream's dead letters with its reason, and the \
             figures come with\nthe consumers' reports (every few seconds):\n\n\
             ```sh\n\
             mysimbdp stream dead-letters {name}\n\
             mysimbdp stream stats {name}\n\
             ```\n"
        ),
    };
    let costs = match args.lang {
        Lang::Rust => "",
        Lang::Python => {
            "See docs/apps-python.md in the mysimbdp repository for the limits and costs of \
             Python apps.\n"
        }
        Lang::Js => {
            "See docs/apps-js.md in the mysimbdp repository for the limits and costs of \
             JavaScript apps.\n"
        }
    };
    let rust_sdk = args
        .rust_sdk
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-guest"));
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{kind}}", kind)
            .replace("{{language}}", language)
            .replace("{{setup}}", setup)
            .replace("{{build}}", &build_command(args.lang, args.kind))
            .replace("{{sample}}", sample)
            .replace("{{limits}}", limits)
            .replace("{{platform}}", &platform)
            .replace("{{costs}}", costs)
            .replace("{{rust_sdk}}", &rust_sdk.display().to_string())
    };
    let mut files = vec![
        (main_file.to_owned(), fill(main_text)),
        ("README.md".to_owned(), fill(README)),
        (sample.to_owned(), sample_text.to_owned()),
    ];
    for (path, text) in sdk.iter().copied().chain(WIT.iter().copied()) {
        // The vendored SDK and WIT are copied as they are; only templates are filled in.
        let text = if path == "package.json" || path == "Cargo.toml" {
            fill(text)
        } else {
            text.to_owned()
        };
        files.push((path.to_owned(), text));
    }
    if args.lang == Lang::Js {
        files.push((
            ".gitignore".to_owned(),
            "node_modules/\napp.wasm\n".to_owned(),
        ));
    } else {
        files.push((
            ".gitignore".to_owned(),
            "target/\n__pycache__/\napp.wasm\n".to_owned(),
        ));
    }
    Ok(files)
}

/// `app new`: writes the project and says how to build it.
pub(super) fn new(args: NewArgs) -> Result<ExitCode> {
    let files = project_files(&args)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        bail!(
            "{} exists already: app new only creates new projects",
            dir.display()
        );
    }
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {} ({} files); build it with:\n  cd {} && {}",
        dir.display(),
        files.len(),
        dir.display(),
        build_command(args.lang, args.kind)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, lang: Lang, kind: Kind) -> NewArgs {
        NewArgs {
            name: name.to_owned(),
            lang,
            kind,
            dir: None,
            rust_sdk: Some(PathBuf::from("/sdk")),
        }
    }

    #[test]
    fn every_template_is_filled_in() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in [Kind::Batch, Kind::Stream] {
                let files = project_files(&args("my-app", lang, kind)).unwrap();
                for (path, text) in &files {
                    if !path.starts_with("sdk/")
                        && !path.starts_with("mysimbdp/")
                        && !path.starts_with("wit/")
                    {
                        assert!(
                            !text.contains("{{"),
                            "{lang:?}/{kind:?}: {path} keeps a placeholder"
                        );
                    }
                }
                let readme = &files.iter().find(|(p, _)| p == "README.md").unwrap().1;
                assert!(readme.contains(&build_command(lang, kind)));
            }
        }
    }

    #[test]
    fn names_that_are_not_plain_are_refused() {
        for name in ["", "-x", "a/b", "../up", "x y", &"n".repeat(65)] {
            assert!(
                project_files(&args(name, Lang::Python, Kind::Batch)).is_err(),
                "{name:?}"
            );
        }
    }
}
