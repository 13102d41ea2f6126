//! The host side of the `mysimbdp:ingest` WIT package: version 0.2.0 from `wit/`, and 0.1.0
//! from `wit/v0.1.0/`, which the host keeps serving (see `wit/README.md`, Versioning).
//!
//! One `bindgen!` binds one world of one version, so there are four calls; within a version
//! the stream world reuses the batch world's import bindings through `with`, so each host
//! trait exists once per version. The 0.1.0 traits are implemented by delegating to the
//! 0.2.0 ones (`runtime::host::v0_1`), so both versions share one implementation.

#![allow(missing_docs)]

/// Bindings of the 0.2.0 `batch-app` world, and of the imports both worlds share.
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

/// Bindings of the 0.2.0 `stream-app` world.
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

/// Bindings of the 0.1.0 worlds, for apps built before 0.2.0.
pub mod v0_1 {
    /// The 0.1.0 `batch-app` world, and the imports both 0.1.0 worlds share.
    pub mod batch {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "mysimbdp:ingest/batch-app",
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "mysimbdp:ingest/batch-input.source": crate::runtime::host::input::InputFile,
            },
        });
    }

    /// The 0.1.0 `stream-app` world.
    pub mod stream {
        wasmtime::component::bindgen!({
            path: "../wit/v0.1.0",
            world: "mysimbdp:ingest/stream-app",
            imports: { default: async | trappable },
            exports: { default: async },
            with: {
                "mysimbdp:ingest/types": super::batch::mysimbdp::ingest::types,
                "mysimbdp:ingest/log": super::batch::mysimbdp::ingest::log,
                "mysimbdp:ingest/params": super::batch::mysimbdp::ingest::params,
            },
        });
    }
}

pub use batch::mysimbdp::ingest::types::{AppError, Document, Documents, Quality, Violation};
pub use stream::exports::mysimbdp::ingest::stream_ingest::Message;
