//! The host side of the `mysimbdp:ingest` WIT package in `wit/`.
//!
//! One `bindgen!` binds one world, so there are two calls, one per world, both reading the
//! same `wit/` directory; the stream world reuses the batch world's import bindings through
//! `with`, so each host trait exists exactly once.

#![allow(missing_docs)]

/// Bindings of the `batch-app` world, and of the imports both worlds share.
pub mod batch {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mysimbdp:ingest/batch-app",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize],
        with: {
            "mysimbdp:ingest/batch-input.source": crate::runtime::host::input::InputFile,
        },
    });
}

/// Bindings of the `stream-app` world.
pub mod stream {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mysimbdp:ingest/stream-app",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [serde::Serialize],
        with: {
            "mysimbdp:ingest/types": super::batch::mysimbdp::ingest::types,
            "mysimbdp:ingest/log": super::batch::mysimbdp::ingest::log,
            "mysimbdp:ingest/params": super::batch::mysimbdp::ingest::params,
        },
    });
}

pub use batch::mysimbdp::ingest::types::{AppError, Document, Quality, Violation};
pub use stream::exports::mysimbdp::ingest::stream_ingest::Message;
