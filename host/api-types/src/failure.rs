//! The classes of a failed call into an app: what the API, logs and dead-letter headers
//! name them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// What went wrong, as a class with a documented policy (see `wit/README.md`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
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
    /// Values that break the canonical ABI at the component boundary: invalid UTF-8, an
    /// out-of-range variant/enum/option tag, a list or string out of bounds, a hostile
    /// `cabi_realloc`, a dropped or forged resource handle, too much data copied in one
    /// call. The guest's fault and deterministic: never retried.
    AbiViolation,
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
            Self::AbiViolation => "abi-violation",
            Self::HostError => "host-error",
            Self::InvalidComponent => "invalid-component",
        }
    }

    /// Every class.
    pub const ALL: [Self; 14] = [
        Self::Reject,
        Self::Retry,
        Self::OutOfFuel,
        Self::MemoryLimit,
        Self::Deadline,
        Self::StackOverflow,
        Self::Panic,
        Self::OutputLimit,
        Self::HostCallLimit,
        Self::ResourceLimit,
        Self::BadOutput,
        Self::AbiViolation,
        Self::HostError,
        Self::InvalidComponent,
    ];

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

/// A name that is no failure class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFailureClass(pub String);

impl fmt::Display for UnknownFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a failure class", self.0)
    }
}

impl std::error::Error for UnknownFailureClass {}

impl FromStr for FailureClass {
    type Err = UnknownFailureClass;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|class| class.as_str() == name)
            .ok_or_else(|| UnknownFailureClass(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_wire_form() {
        for class in FailureClass::ALL {
            let json = serde_json::to_value(class).unwrap_or_default();
            assert_eq!(json, serde_json::Value::from(class.as_str()));
            assert_eq!(class.as_str().parse(), Ok(class));
        }
        assert!("delivery-limit".parse::<FailureClass>().is_err());
    }
}
