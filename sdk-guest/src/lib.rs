//! The Rust SDK for mysimbdp ingestion apps.
//!
//! A tenant writes one function and marks it with [`batch_app`] or [`stream_app`]; the SDK
//! generates the WebAssembly component glue for the `mysimbdp:ingest` worlds. Build the app
//! with `cargo build --target wasm32-wasip2 --release` (or `cargo component build --release`).
//!
//! ```ignore
//! use mysimbdp_sdk::{batch_app, AppError, Input, Output, Quality};
//!
//! #[batch_app]
//! fn ingest(input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
//!     let mut quality = Quality::default();
//!     for line in input.lines() {
//!         let line = line?;
//!         quality.record();
//!         out.emit(&serde_json::json!({ "line": line }))?;
//!     }
//!     Ok(quality)
//! }
//! ```

mod error;
mod input;
pub mod log;
mod message;
mod output;
pub mod params;
mod quality;

/// The CSV crate `Input::csv` returns readers of, re-exported so versions always match.
pub use csv;
pub use error::AppError;
pub use input::Input;
pub use message::Message;
pub use mysimbdp_sdk_macro::{batch_app, stream_app};
pub use output::Output;
pub use quality::Quality;
pub use serde_json;

/// Glue used by the code that `#[batch_app]` and `#[stream_app]` generate. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    /// Bindings for the host imports, shared by every app built with this SDK.
    #[allow(missing_docs, unsafe_code, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            inline: "
                package mysimbdp:sdk;
                world imports {
                    import mysimbdp:ingest/log@0.2.0;
                    import mysimbdp:ingest/params@0.2.0;
                    import mysimbdp:ingest/batch-input@0.2.0;
                    import mysimbdp:ingest/batch-output@0.2.0;
                }
            ",
            path: "../wit",
            world: "mysimbdp:sdk/imports",
            generate_all,
            generate_unused_types: true,
        });
    }

    use crate::{AppError, Input, Message, Output, Quality, output};
    use bindings::mysimbdp::ingest::{batch_input::Source, types};

    /// The signature `#[batch_app]` accepts.
    pub type BatchFn = fn(&mut Input, &mut Output) -> Result<Quality, AppError>;
    /// The signature `#[stream_app]` accepts.
    pub type StreamFn = fn(&Message, &mut Output) -> Result<(), AppError>;

    /// Runs the tenant's batch function over one staged file, flushing its last documents.
    pub fn run_batch(source: &Source, app: BatchFn) -> Result<types::Quality, types::AppError> {
        let mut input = Input::new(source);
        let mut output = Output::streaming(output::Sink {
            records: bindings::mysimbdp::ingest::batch_output::emit,
            ndjson: bindings::mysimbdp::ingest::batch_output::emit_ndjson,
        });
        let quality = app(&mut input, &mut output).map_err(AppError::into_wit)?;
        output.flush();
        Ok(quality.into_wit())
    }

    /// Runs the tenant's stream function on one message and returns its outcome.
    pub fn run_message(
        message: Message,
        app: StreamFn,
    ) -> Result<types::Documents, types::AppError> {
        let mut output = Output::collecting();
        app(&message, &mut output).map_err(AppError::into_wit)?;
        Ok(output.into_documents())
    }
}
