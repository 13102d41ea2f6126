//! Typed failures of a call into an app, and how wasmtime's errors map onto them.

use serde::Serialize;
use std::fmt;
use std::time::Duration;
use wasmtime::Trap;
use wasmtime::component::ResourceTableError;

/// What went wrong, as a class with a documented policy (see `wit/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// The app refused its input: never retried.
    Reject,
    /// The app asked to be retried.
    Retry,
    /// The fuel budget ran out.
    OutOfFuel,
    /// Linear memory or tables grew past the cap.
    MemoryLimit,
    /// The wall-clock deadline passed.
    Deadline,
    /// The wasm stack overflowed.
    StackOverflow,
    /// The app panicked or trapped.
    Panic,
    /// Too many documents in a call, a document too large, or too many bytes in total.
    OutputLimit,
    /// Too many calls into the host.
    HostCallLimit,
    /// Too many host resources (streams, handles) held at once.
    ResourceLimit,
    /// Output that breaks the contract: not a JSON object, wrong number of outcomes.
    BadOutput,
    /// Infrastructure on the host side failed: retried.
    HostError,
    /// Not a component of one of our worlds; refused at upload or check.
    InvalidComponent,
}

impl FailureClass {
    /// The class's stable name, as used in logs, APIs and dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Retry => "retry",
            Self::OutOfFuel => "out-of-fuel",
            Self::MemoryLimit => "memory-limit",
            Self::Deadline => "deadline",
            Self::StackOverflow => "stack-overflow",
            Self::Panic => "panic",
            Self::OutputLimit => "output-limit",
            Self::HostCallLimit => "host-call-limit",
            Self::ResourceLimit => "resource-limit",
            Self::BadOutput => "bad-output",
            Self::HostError => "host-error",
            Self::InvalidComponent => "invalid-component",
        }
    }

    /// Whether the same input may succeed on a later attempt.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retry | Self::HostError)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
