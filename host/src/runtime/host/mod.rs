//! The host imports an app may call, one small module per capability. Each implements the
//! bindgen-generated `Host` trait on the Store's data; every call is charged against the
//! call's host-call budget before it does anything. `v0_1` serves 0.1.0 apps through the
//! same implementations.

pub(crate) mod input;
mod log;
mod output;
mod params;
pub(crate) mod v0_1;

use super::bindings::batch::mysimbdp::ingest::types;
use super::state::HostState;

impl types::Host for HostState {}
