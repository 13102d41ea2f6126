//! `mysimbdp:ingest/batch-output`: documents out of a batch app, checked against the output
//! caps and passed to the sink through a bounded channel, so a slow sink slows the app
//! down instead of piling documents up in memory. `emit` takes records, `emit-ndjson` (0.2.0)
//! one buffer of newline-delimited JSON; both end up as the same per-document batches.

use crate::runtime::bindings::Document;
use crate::runtime::bindings::batch::mysimbdp::ingest::batch_output::Host;
use crate::runtime::failure::Violation;
use crate::runtime::state::{HostState, OutputBatch};

impl Host for HostState {
    async fn emit(&mut self, documents: Vec<Document>) -> wasmtime::Result<()> {
        self.call.charge_host_call()?;
        self.call.admit(&documents, "emit")?;
        self.send(documents).await
    }

    async fn emit_ndjson(&mut self, lines: Vec<u8>) -> wasmtime::Result<()> {
        self.call.charge_host_call()?;
        let documents = self.call.admit_ndjson(&lines, "emit-ndjson")?;
        drop(lines);
        self.send(documents).await
    }
}

impl HostState {
    /// Hands admitted documents (already counted in `call.documents`) to the sink.
    async fn send(&mut self, documents: Vec<Document>) -> wasmtime::Result<()> {
        if documents.is_empty() {
            return Ok(());
        }
        let first_index = self.call.documents - documents.len() as u64;
        let Some(sink) = &self.call.output else {
            return Err(Violation::Host("this call has no document sink".to_owned()).into());
        };
        let waiting = std::time::Instant::now();
        sink.send(OutputBatch {
            first_index,
            documents,
        })
        .await
        .map_err(|_| Violation::Host("the document sink stopped".to_owned()))?;
        self.call.clock.waited(waiting.elapsed());
        Ok(())
    }
}
