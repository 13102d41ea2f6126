//! Admission checks of a component before it is compiled: is it a component at all, which
//! world does it target, and does it import only what the platform provides and grants. All
//! of it reads the component's own import and export sections, so a hostile component is
//! refused here without costing a compile.

use super::failure::Failure;
use wasmparser::{Chunk, Parser, Payload};

// The kind is part of the API (app and version views): it lives in the API types crate.
pub use mysimbdp_api::AppKind;

/// The interfaces of our package an app of `kind` may import.
fn own_imports(kind: AppKind) -> &'static [&'static str] {
    match kind {
        AppKind::Batch => &["types", "log", "params", "batch-input", "batch-output"],
        AppKind::Stream => &["types", "log", "params"],
    }
}

/// WASI 0.2 packages language runtimes import; what they may do is decided by the WASI
/// context (no preopens, no environment, every socket address denied).
const WASI_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
];

const BATCH_EXPORT: &str = "mysimbdp:ingest/batch-ingest";
const STREAM_EXPORT: &str = "mysimbdp:ingest/stream-ingest";
const OWN_PACKAGE: &str = "mysimbdp:ingest";

/// The version of the `mysimbdp:ingest` package a component was built against; the host
/// serves each (see `wit/README.md`, Versioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// 0.1.0: documents as records only.
    V0_1,
    /// 0.2.0: adds newline-delimited JSON output (`emit-ndjson`, `documents.ndjson`).
    V0_2,
}

impl Contract {
    /// Every version served, oldest first.
    pub const ALL: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

    /// The package version, as components name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    fn parse(version: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == version)
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{OWN_PACKAGE}@{}", self.as_str())
    }
}

/// Refuses what is not a WebAssembly component, by its header, before any parsing.
pub(crate) fn check_binary(wasm: &[u8], max_bytes: u64) -> Result<(), Failure> {
    if wasm.len() as u64 > max_bytes {
        return Err(Failure::invalid(format!(
            "the component is {} bytes, above the cap of {max_bytes} bytes",
            wasm.len()
        )));
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(Failure::invalid(
            "not a WebAssembly binary (it lacks the \\0asm header)",
        ));
    }
    match &wasm[4..8] {
        [1, 0, 0, 0] => Err(Failure::invalid(
            "a core WebAssembly module, not a component: build the app with \
             `cargo build --target wasm32-wasip2` or `cargo component build`",
        )),
        [0x0d, 0, 0x01, 0] => Ok(()),
        other => Err(Failure::invalid(format!(
            "an unsupported WebAssembly binary version {other:02x?}"
        ))),
    }
}

/// The top-level import and export names of a component, read from its sections without
/// compiling (nested core modules and components are skipped, not parsed).
pub(crate) fn interface(wasm: &[u8]) -> Result<(Vec<String>, Vec<String>), Failure> {
    let malformed =
        |e: wasmparser::BinaryReaderError| Failure::invalid(format!("not a valid component: {e}"));
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut parser = Parser::new(0);
    let mut data = wasm;
    loop {
        let (payload, consumed) = match parser.parse(data, true).map_err(malformed)? {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            // `eof` is true: the parser reports truncation as an error instead.
            Chunk::NeedMoreData(_) => {
                return Err(Failure::invalid("not a valid component: it is truncated"));
            }
        };
        let mut skip = consumed;
        match payload {
            Payload::ComponentImportSection(section) => {
                for import in section {
                    imports.push(import.map_err(malformed)?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) => {
                for export in section {
                    exports.push(export.map_err(malformed)?.name.name.to_owned());
                }
            }
            // The nested body follows its header; the top-level parser already counted it.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => skip += unchecked_range.len(),
            Payload::End(_) => return Ok((imports, exports)),
            _ => {}
        }
        data = data
            .get(skip..)
            .ok_or_else(|| Failure::invalid("not a valid component: a section overruns it"))?;
    }
}

/// Names the component's world and contract version by its exports and refuses imports
/// outside that world or of another version of our package, then imports the operator
/// refuses (`refused` prefixes).
pub(crate) fn classify(
    imports: &[String],
    exports: &[String],
    refused: &[String],
) -> Result<(AppKind, Contract), Failure> {
    let exports_interface = |wanted: &str| exports.iter().any(|e| unversioned(e) == wanted);
    let kind = match (
        exports_interface(BATCH_EXPORT),
        exports_interface(STREAM_EXPORT),
    ) {
        (true, false) => AppKind::Batch,
        (false, true) => AppKind::Stream,
        (true, true) => {
            return Err(Failure::invalid(
                "exports both batch-ingest and stream-ingest: an app targets one world",
            ));
        }
        (false, false) => {
            return Err(Failure::invalid(format!(
                "targets the wrong world: it exports {} but a mysimbdp app exports \
                 {BATCH_EXPORT} (world batch-app) or {STREAM_EXPORT} (world stream-app)",
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            )));
        }
    };
    let export = exports
        .iter()
        .find(|e| matches!(unversioned(e), BATCH_EXPORT | STREAM_EXPORT))
        .map_or("", String::as_str);
    let contract = contract_of(export)?;
    let mixed = imports.iter().find(|import| {
        unversioned(import)
            .split_once('/')
            .map(|(package, _)| package)
            == Some(OWN_PACKAGE)
            && import.split_once('@').map(|(_, v)| v) != Some(contract.as_str())
    });
    if let Some(import) = mixed {
        return Err(Failure::invalid(format!(
            "imports {import} but exports {export}: an app is built against one version of \
             {OWN_PACKAGE}"
        )));
    }
    if let Some(unknown) = imports.iter().find(|name| !import_allowed(kind, name)) {
        return Err(Failure::invalid(format!(
            "imports {unknown}, which the platform does not provide to {kind} apps"
        )));
    }
    let refused_import = imports.iter().find(|import| {
        refused
            .iter()
            .any(|prefix| import.starts_with(prefix.as_str()))
    });
    if let Some(import) = refused_import {
        return Err(Failure::invalid(format!(
            "the component imports {import}, which this platform refuses its apps \
             (apps.refused_imports; input comes through batch-input or stream messages)"
        )));
    }
    Ok((kind, contract))
}

/// The contract version an export names (`…/batch-ingest@0.2.0`), if the host serves it.
fn contract_of(export: &str) -> Result<Contract, Failure> {
    let served = || Contract::ALL.map(Contract::as_str).join(", ");
    let Some((_, version)) = export.split_once('@') else {
        return Err(Failure::invalid(format!(
            "exports {export} without a version: build it against {OWN_PACKAGE} {}",
            served()
        )));
    };
    Contract::parse(version).ok_or_else(|| {
        Failure::invalid(format!(
            "built against {OWN_PACKAGE}@{version}, which this platform does not serve \
             (it serves {})",
            served()
        ))
    })
}

fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

fn import_allowed(kind: AppKind, name: &str) -> bool {
    let name = unversioned(name);
    let Some((package, interface)) = name.split_once('/') else {
        return false;
    };
    if package == "mysimbdp:ingest" {
        return own_imports(kind).contains(&interface);
    }
    WASI_PACKAGES.contains(&package)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        let reason = |bytes: &[u8]| check_binary(bytes, 1 << 20).unwrap_err().message;
        assert!(reason(b"hello, world").contains("not a WebAssembly binary"));
        assert!(reason(b"\0asm\x01\0\0\0").contains("core WebAssembly module"));
        assert!(reason(b"\0asm\x02\0\0\0").contains("unsupported"));
        assert!(check_binary(b"\0asm\x0d\0\x01\0", 1 << 20).is_ok());
        assert!(reason(&[0; 100]).contains("not a WebAssembly"));
        assert!(
            check_binary(b"\0asm\x0d\0\x01\0", 4)
                .unwrap_err()
                .message
                .contains("above the cap")
        );
    }

    #[test]
    fn refused_imports_are_named_before_compiling() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let exports = names(&["mysimbdp:ingest/batch-ingest@0.1.0"]);
        let refused = names(&["wasi:sockets/"]);
        let imports = names(&["wasi:io/error@0.2.6", "wasi:sockets/tcp@0.2.6"]);
        let reason = classify(&imports, &exports, &refused).unwrap_err().message;
        assert!(reason.contains("wasi:sockets/tcp@0.2.6"), "{reason}");
        assert!(classify(&imports, &exports, &[]).is_ok());
        assert!(classify(&imports[..1], &exports, &refused).is_ok());
    }

    #[test]
    fn the_contract_version_comes_from_the_export_and_must_match_the_imports() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (version, contract) in [("0.1.0", Contract::V0_1), ("0.2.0", Contract::V0_2)] {
            let exports = names(&[&format!("mysimbdp:ingest/batch-ingest@{version}")]);
            let imports = names(&[
                &format!("mysimbdp:ingest/batch-output@{version}"),
                "wasi:filesystem/types@0.2.6",
                "wasi:sockets/tcp@0.2.6",
            ]);
            assert_eq!(
                classify(&imports, &exports, &[]).unwrap(),
                (AppKind::Batch, contract)
            );
        }
        let exports = names(&["mysimbdp:ingest/batch-ingest@0.2.0"]);
        let mixed = names(&["mysimbdp:ingest/batch-output@0.1.0"]);
        let reason = classify(&mixed, &exports, &[]).unwrap_err().message;
        assert!(reason.contains("one version"), "{reason}");
        let future = names(&["mysimbdp:ingest/stream-ingest@0.9.0"]);
        let reason = classify(&[], &future, &[]).unwrap_err().message;
        assert!(
            reason.contains("0.9.0") && reason.contains("0.1.0, 0.2.0"),
            "{reason}"
        );
        let bare = names(&["mysimbdp:ingest/stream-ingest"]);
        let reason = classify(&[], &bare, &[]).unwrap_err().message;
        assert!(reason.contains("without a version"), "{reason}");
    }

    #[test]
    fn top_level_names_are_read_without_compiling() {
        let wasm = wat::parse_str(
            r#"(component
                 (import "wasi:sockets/tcp@0.2.6" (instance))
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (export "mysimbdp:ingest/stream-ingest@0.1.0" (func $f)))"#,
        )
        .unwrap();
        let (imports, exports) = interface(&wasm).unwrap();
        assert_eq!(imports, ["wasi:sockets/tcp@0.2.6"]);
        assert_eq!(exports, ["mysimbdp:ingest/stream-ingest@0.1.0"]);
        assert!(interface(&wasm[..wasm.len() - 3]).is_err());
    }

    #[test]
    fn imports_are_limited_to_the_world() {
        assert!(import_allowed(
            AppKind::Batch,
            "mysimbdp:ingest/batch-input@0.1.0"
        ));
        assert!(!import_allowed(
            AppKind::Stream,
            "mysimbdp:ingest/batch-input@0.1.0"
        ));
        assert!(import_allowed(AppKind::Stream, "wasi:cli/stderr@0.2.6"));
        assert!(!import_allowed(
            AppKind::Stream,
            "wasi:http/outgoing-handler@0.2.6"
        ));
        assert!(!import_allowed(AppKind::Batch, "evil:spy/exfiltrate"));
        assert!(!import_allowed(AppKind::Batch, "bare-function"));
    }
}
