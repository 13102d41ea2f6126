//! The 0.1.0 imports, each delegating to its 0.2.0 implementation: the two versions differ
//! only in what 0.2.0 adds, so an old app is charged, capped and served exactly as a new one.

use crate::runtime::bindings::v0_1::batch::mysimbdp::ingest as old;
use crate::runtime::bindings::{Document, batch::mysimbdp::ingest as new};
use crate::runtime::host::input::InputFile;
use crate::runtime::state::HostState;
use wasmtime::component::Resource;

impl old::types::Host for HostState {}

impl old::log::Host for HostState {
    async fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        use {new::log::Level as New, old::log::Level as Old};
        let level = match level {
            Old::Trace => New::Trace,
            Old::Debug => New::Debug,
            Old::Info => New::Info,
            Old::Warn => New::Warn,
            Old::Error => New::Error,
        };
        new::log::Host::log(self, level, message).await
    }
}

impl old::params::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        new::params::Host::get(self, name).await
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        new::params::Host::all(self).await
    }
}

impl old::batch_input::Host for HostState {}

impl old::batch_input::HostSource for HostState {
    async fn name(&mut self, file: Resource<InputFile>) -> wasmtime::Result<String> {
        new::batch_input::HostSource::name(self, file).await
    }

    async fn size(&mut self, file: Resource<InputFile>) -> wasmtime::Result<u64> {
        new::batch_input::HostSource::size(self, file).await
    }

    async fn content_type(
        &mut self,
        file: Resource<InputFile>,
    ) -> wasmtime::Result<Option<String>> {
        new::batch_input::HostSource::content_type(self, file).await
    }

    async fn read(&mut self, file: Resource<InputFile>, max: u32) -> wasmtime::Result<Vec<u8>> {
        new::batch_input::HostSource::read(self, file, max).await
    }

    async fn drop(&mut self, file: Resource<InputFile>) -> wasmtime::Result<()> {
        new::batch_input::HostSource::drop(self, file).await
    }
}

impl old::batch_output::Host for HostState {
    async fn emit(&mut self, documents: Vec<old::types::Document>) -> wasmtime::Result<()> {
        let documents = documents.into_iter().map(document).collect();
        new::batch_output::Host::emit(self, documents).await
    }
}

/// A 0.1.0 document as the host's (0.2.0) type: the same record, moved.
pub(crate) fn document(document: old::types::Document) -> Document {
    Document {
        id: document.id,
        json: document.json,
    }
}

/// A 0.1.0 app's quality report as the host's type.
pub(crate) fn quality(quality: old::types::Quality) -> crate::runtime::bindings::Quality {
    crate::runtime::bindings::Quality {
        records_in: quality.records_in,
        records_bad: quality.records_bad,
        violations: quality
            .violations
            .into_iter()
            .map(|v| crate::runtime::bindings::Violation {
                rule: v.rule,
                count: v.count,
                example: v.example,
            })
            .collect(),
    }
}

/// A 0.1.0 app's error as the host's type.
pub(crate) fn app_error(error: old::types::AppError) -> crate::runtime::bindings::AppError {
    use crate::runtime::bindings::AppError as New;
    match error {
        old::types::AppError::Reject(reason) => New::Reject(reason),
        old::types::AppError::Retry(reason) => New::Retry(reason),
    }
}
