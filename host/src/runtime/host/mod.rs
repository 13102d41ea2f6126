//! The host imports an app may call, one small module per capability. Each implements the
//! bindgen-generated `Host` trait on the Store's data; every call is charged against the
//! call's host-call budget before it does anything.

pub(crate) mod input;
mod log;
mod output;
mod params;

use super::bindings::batch::mysimbdp::ingest::types;
use super::state::HostState;

impl types::Host for HostState {}
