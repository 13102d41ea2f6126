//! Typed failures of a call into an app, and how wasmtime's errors map onto them.

use serde::Serialize;
use std::time::Duration;
use wasmtime::Trap;
use wasmtime::component::ResourceTableError;

// The class is part of the API (views, error bodies): it lives in the API types crate.
pub use mysimbdp_api::FailureClass;

/// What a call consumed, on success and on failure alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Fuel burnt.
    pub fuel: u64,
    /// Wall-clock time of the call, instantiation included.
    pub duration: Duration,
    /// Documents the app emitted.
    pub documents: u64,
    /// JSON bytes the app emitted.
    pub output_bytes: u64,
    /// Calls into the host.
    pub host_calls: u64,
    /// Log lines beyond the cap, dropped.
    pub logs_dropped: u64,
    /// What the app wrote to stdout (bounded).
    pub stdout: String,
    /// What the app wrote to stderr (bounded); a Rust panic message arrives here.
    pub stderr: String,
}

/// A failed call: its class, a message for people, and what it used up to then.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class}: {message}")]
pub struct Failure {
    /// The class, which decides retry, quarantine or dead-lettering.
    pub class: FailureClass,
    /// What happened, safe to show the tenant.
    pub message: String,
    /// Resources used until the failure (boxed: failures travel in `Result`s on hot paths).
    pub usage: Box<Usage>,
}

impl Failure {
    /// A failure with no usage attached (before anything ran).
    pub fn new(class: FailureClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            usage: Box::default(),
        }
    }

    /// Shorthand for an `invalid-component` failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(FailureClass::InvalidComponent, message)
    }
}

/// A limit or contract violation the host raises as a trap from inside a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    #[error("linear memory would grow to {desired} bytes, above the cap of {cap} bytes")]
    Memory { desired: usize, cap: usize },
    #[error("a table would grow to {desired} elements, above the cap of {cap}")]
    Table { desired: usize, cap: usize },
    #[error("the deadline of {0:?} passed")]
    Deadline(Duration),
    #[error("{0}")]
    Output(String),
    #[error("more than {0} calls into the host")]
    HostCalls(u64),
    #[error("{0}")]
    BadOutput(String),
    #[error("{0}")]
    Host(String),
}

impl Violation {
    pub(crate) fn class(&self) -> FailureClass {
        match self {
            Self::Memory { .. } | Self::Table { .. } => FailureClass::MemoryLimit,
            Self::Deadline(_) => FailureClass::Deadline,
            Self::Output(_) => FailureClass::OutputLimit,
            Self::HostCalls(_) => FailureClass::HostCallLimit,
            Self::BadOutput(_) => FailureClass::BadOutput,
            Self::Host(_) => FailureClass::HostError,
        }
    }
}

/// Maps an error out of wasmtime to a failure class and message. `stderr` is the app's
/// captured stderr, where a Rust guest's panic message lands before its `unreachable` trap.
pub(crate) fn classify(
    error: &wasmtime::Error,
    fuel_budget: u64,
    stderr: &str,
) -> (FailureClass, String) {
    if let Some(violation) = error.downcast_ref::<Violation>() {
        return (violation.class(), violation.to_string());
    }
    if let Some(ResourceTableError::Full) = error.downcast_ref::<ResourceTableError>() {
        return (
            FailureClass::ResourceLimit,
            "the app holds too many host resources (streams, handles) at once".to_owned(),
        );
    }
    if let Some(class) = abi_violation(error) {
        // wasmtime's own message names the broken rule and holds nothing from the host.
        let what = match class {
            FailureClass::ResourceLimit => "the app holds too many handles",
            _ => "the app broke the canonical ABI",
        };
        return (class, format!("{what}: {}", error.root_cause()));
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (
            FailureClass::Panic,
            format!("the app called exit({}) in the middle of a call", exit.0),
        );
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (
            FailureClass::OutOfFuel,
            format!("the app used up its fuel budget of {fuel_budget}"),
        ),
        Some(Trap::StackOverflow) => (
            FailureClass::StackOverflow,
            "the app overflowed its stack".to_owned(),
        ),
        Some(Trap::Interrupt) => (FailureClass::Deadline, "the app was interrupted".to_owned()),
        Some(Trap::MemoryOutOfBounds) => (
            FailureClass::Panic,
            panic_message(stderr).unwrap_or_else(|| {
                // Rust and C keep a shadow stack in linear memory; overflowing it lands here.
                "trap: out-of-bounds memory access (also how a shadow stack overflow in \
                 linear memory ends)"
                    .to_owned()
            }),
        ),
        Some(trap) => (
            FailureClass::Panic,
            panic_message(stderr).unwrap_or_else(|| format!("trap: {trap}")),
        ),
        None => (FailureClass::HostError, format!("{error:#}")),
    }
}

/// How wasmtime 48 reports a guest that breaks the canonical ABI when values cross the
/// component boundary (lifting an export's results or an import's arguments, or lowering
/// into guest memory through the guest's `cabi_realloc`). Most are untyped `bail!`s in
/// `component/func/{typed,options,host}.rs`, `component/resources/*.rs` and
/// `vm/component/{handle_table,resources}.rs`, so they are matched by a fragment of the root
/// cause's message; each entry says which check raises it. Only the root cause is read:
/// context added on the way up (by the host, possibly holding tenant text) cannot match.
/// Unit tests pin the table; the hostile components of `tests/abi.rs` fail if a wasmtime
/// upgrade rewords a message.
const ABI_MESSAGES: &[&str] = &[
    // Strings: `WasmStr::new` and UTF-8/16 decoding (`to_str_from_memory`).
    "string pointer/length out of bounds",
    "string pointer not aligned",
    "invalid utf-8",
    "incomplete utf-8",
    "unpaired surrogate",
    // Lists and maps: `WasmList::new`, map lifting.
    "list pointer/length out of bounds",
    "list pointer is not aligned",
    "map pointer/length out of bounds",
    "map pointer is not aligned",
    // Return areas and import argument pointers (`func.rs`, `typed.rs`, `host.rs`).
    "return pointer not aligned",
    "pointer out of bounds",
    "pointer not aligned",
    // Tags: `option` and `result` (`typed.rs`), bindgen's variants and enums (its derive
    // macro), dynamic values (`values.rs`), `char` (`CharTryFromError`, also downcast).
    "invalid option discriminant",
    "invalid expected discriminant",
    "unexpected discriminant",
    "out of range [0..",
    "converted integer out of range for `char`",
    // The guest's allocator, called to receive a value (`options.rs` `realloc`).
    "realloc return:",
    // Resource handles: dropped, forged, of the wrong type, or borrows kept past return.
    "unknown handle index",
    "is not a resource",
    "is not an own resource",
    "used with the wrong type",
    "cannot remove owned resource while borrowed",
    "cannot lift own resource from a borrow",
    "borrow handles still remain at the end of the call",
    // The per-call copy limit between host and guest (`HostcallFuelExhausted`, private).
    "too much data is being copied between the host and the guest",
];

/// wasmtime's own cap on a store's component handles (`handle_table.rs`): handles the guest
/// piles up, like [`ResourceTableError::Full`] for the host's table.
const HANDLE_LIMIT_MESSAGE: &str = "store handle limit exceeded";

/// The class of a canonical-ABI fault of the guest, if `error` is one: typed errors first
/// (UTF-8 and `char` decoding, and the traps the fused adapters raise for the same faults),
/// then [`ABI_MESSAGES`].
fn abi_violation(error: &wasmtime::Error) -> Option<FailureClass> {
    let decoding = error.is::<std::str::Utf8Error>()
        || error.is::<std::char::CharTryFromError>()
        || error.is::<std::char::DecodeUtf16Error>();
    let adapter_trap = matches!(
        error.downcast_ref::<Trap>(),
        Some(
            Trap::StringOutOfBounds
                | Trap::ListOutOfBounds
                | Trap::InvalidDiscriminant
                | Trap::InvalidChar
                | Trap::UnalignedPointer
                | Trap::CannotEnterComponent
                | Trap::CannotLeaveComponent
        )
    );
    if decoding || adapter_trap {
        return Some(FailureClass::AbiViolation);
    }
    let root = error.root_cause().to_string();
    if root.contains(HANDLE_LIMIT_MESSAGE) {
        Some(FailureClass::ResourceLimit)
    } else if ABI_MESSAGES.iter().any(|fragment| root.contains(fragment)) {
        Some(FailureClass::AbiViolation)
    } else {
        None
    }
}

/// The first line of a Rust panic report, if the app printed one.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at")?;
    let mut lines = stderr[start..].lines();
    let place = lines.next()?.trim_end_matches(':');
    match lines.next() {
        Some(what) => Some(format!("the app {place}: {what}")),
        None => Some(format!("the app {place}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_per_class() {
        assert!(FailureClass::Retry.is_retryable());
        assert!(FailureClass::HostError.is_retryable());
        assert!(!FailureClass::Reject.is_retryable());
        assert!(!FailureClass::OutOfFuel.is_retryable());
        assert!(!FailureClass::AbiViolation.is_retryable());
        assert_eq!(FailureClass::AbiViolation.as_str(), "abi-violation");
        assert_eq!(
            serde_json::to_value(FailureClass::AbiViolation).unwrap(),
            "abi-violation"
        );
    }

    fn class_of(error: &wasmtime::Error) -> FailureClass {
        classify(error, 0, "").0
    }

    #[test]
    fn canonical_abi_faults_are_the_guests() {
        // The messages wasmtime 48 raises for each fault, verbatim from its source.
        for message in [
            "string pointer/length out of bounds of memory",
            "string pointer not aligned to 2",
            "list pointer/length out of bounds of memory",
            "list pointer is not aligned",
            "map pointer/length out of bounds of memory",
            "return pointer not aligned",
            "pointer out of bounds of memory",
            "pointer not aligned",
            "invalid option discriminant",
            "invalid expected discriminant",
            "unexpected discriminant: 7",
            "discriminant 9 out of range [0..2)",
            "realloc return: result not aligned",
            "realloc return: beyond end of memory",
            "unknown handle index 42",
            "index 3 is not a resource",
            "index 3 is not an own resource",
            "handle index 1 used with the wrong type, expected X but found host resource",
            "cannot remove owned resource while borrowed",
            "borrow handles still remain at the end of the call",
            "too much data is being copied between the host and the guest: fuel allocated \
             for hostcalls has been exhausted",
        ] {
            let error = wasmtime::Error::msg(message).context("while lifting the result");
            let (class, reason) = classify(&error, 0, "");
            assert_eq!(class, FailureClass::AbiViolation, "{message}");
            assert_eq!(
                reason,
                format!("the app broke the canonical ABI: {message}")
            );
        }
        assert_eq!(
            class_of(&wasmtime::Error::msg(
                "cannot allocate another handle: store handle limit exceeded"
            )),
            FailureClass::ResourceLimit
        );
    }

    #[test]
    fn typed_decoding_errors_are_the_guests() {
        // Built at run time: a literal would be rejected by the `invalid_from_utf8` lint.
        let bytes: Vec<u8> = [b'o', b'k', 0xff].to_vec();
        let utf8 = std::str::from_utf8(&bytes).unwrap_err();
        assert_eq!(
            class_of(&wasmtime::Error::new(utf8)),
            FailureClass::AbiViolation
        );
        let char = char::try_from(0xd800_u32).unwrap_err();
        assert_eq!(
            class_of(&wasmtime::Error::new(char)),
            FailureClass::AbiViolation
        );
        for trap in [
            Trap::StringOutOfBounds,
            Trap::ListOutOfBounds,
            Trap::InvalidDiscriminant,
            Trap::InvalidChar,
            Trap::UnalignedPointer,
            Trap::CannotLeaveComponent,
        ] {
            assert_eq!(
                class_of(&wasmtime::Error::new(trap)),
                FailureClass::AbiViolation,
                "{trap}"
            );
        }
    }

    #[test]
    fn host_failures_stay_host_errors() {
        // Our own import failing stays retryable, even when its message (here a tenant's
        // file name) happens to read like a guest fault.
        let error = wasmtime::Error::new(Violation::Host(
            "reading staged file \"unknown handle index 1\": connection reset".to_owned(),
        ));
        assert_eq!(class_of(&error), FailureClass::HostError);
        // Only the root cause is matched, never context added on the way up.
        let error = wasmtime::Error::msg("connection refused").context("invalid utf-8 in name");
        assert_eq!(class_of(&error), FailureClass::HostError);
        let io = std::io::Error::other("disk on fire");
        assert_eq!(class_of(&wasmtime::Error::new(io)), FailureClass::HostError);
    }

    #[test]
    fn violations_keep_their_class_through_wasmtime_errors() {
        let error = wasmtime::Error::new(Violation::HostCalls(5)).context("while calling ingest");
        let (class, message) = classify(&error, 0, "");
        assert_eq!(class, FailureClass::HostCallLimit);
        assert!(message.contains("more than 5"), "{message}");
    }

    #[test]
    fn panic_messages_come_from_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with ...";
        let error = wasmtime::Error::new(Trap::UnreachableCodeReached);
        let (class, message) = classify(&error, 0, stderr);
        assert_eq!(class, FailureClass::Panic);
        assert_eq!(message, "the app panicked at src/lib.rs:9:5: boom");
    }
}
