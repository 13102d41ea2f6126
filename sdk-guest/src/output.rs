//! `Output`: documents leave the app in batches, never one host call per document.

use crate::__private::bindings::mysimbdp::ingest::types::Document;
use crate::AppError;
use serde::Serialize;

/// Flush to the host after this many documents ...
const BATCH_DOCUMENTS: usize = 2048;
/// ... or this many bytes of JSON, whichever comes first.
const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// Where an app puts its documents. In a batch app they are sent to the host in batches as
/// they accumulate; in a stream app they become the outcome of the current message.
pub struct Output {
    documents: Vec<Document>,
    bytes: usize,
    /// Where full batches go (the host's `emit`, for batch apps). A function pointer rather
    /// than a direct call, so a stream app never links the batch-only import.
    sink: Option<fn(&[Document])>,
    emitted: u64,
}

impl Output {
    pub(crate) fn streaming(sink: fn(&[Document])) -> Self {
        Self {
            documents: Vec::with_capacity(BATCH_DOCUMENTS),
            bytes: 0,
            sink: Some(sink),
            emitted: 0,
        }
    }

    pub(crate) fn collecting() -> Self {
        Self {
            documents: Vec::new(),
            bytes: 0,
            sink: None,
            emitted: 0,
        }
    }

    /// Emit one document: any value that serializes to a JSON object. The platform derives
    /// its `_id` deterministically, so a replay never duplicates it.
    pub fn emit<T: Serialize + ?Sized>(&mut self, document: &T) -> Result<(), AppError> {
        let json = serde_json::to_string(document)
            .map_err(|e| AppError::reject(format!("cannot serialize document: {e}")))?;
        self.push(Document { id: None, json });
        Ok(())
    }

    /// Emit one document with its own `_id` (a natural key that is stable across replays).
    pub fn emit_with_id<T: Serialize + ?Sized>(
        &mut self,
        id: impl Into<String>,
        document: &T,
    ) -> Result<(), AppError> {
        let json = serde_json::to_string(document)
            .map_err(|e| AppError::reject(format!("cannot serialize document: {e}")))?;
        self.push(Document {
            id: Some(id.into()),
            json,
        });
        Ok(())
    }

    /// Emit a document that is already JSON object text.
    pub fn emit_json(&mut self, json: String) {
        self.push(Document { id: None, json });
    }

    /// How many documents this output has taken so far.
    pub fn count(&self) -> u64 {
        self.emitted
    }

    /// Send what is buffered to the host now (batch apps flush on their own when full and
    /// when the app returns).
    pub fn flush(&mut self) {
        if let Some(sink) = self.sink.filter(|_| !self.documents.is_empty()) {
            sink(&self.documents);
            self.documents.clear();
            self.bytes = 0;
        }
    }

    pub(crate) fn into_documents(self) -> Vec<Document> {
        self.documents
    }

    fn push(&mut self, document: Document) {
        self.bytes += document.json.len();
        self.documents.push(document);
        self.emitted += 1;
        if self.sink.is_some()
            && (self.documents.len() >= BATCH_DOCUMENTS || self.bytes >= BATCH_BYTES)
        {
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static SENT: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    fn record_batch(documents: &[Document]) {
        SENT.with(|sent| sent.borrow_mut().push(documents.len()));
    }

    #[test]
    fn batch_apps_flush_full_batches_and_the_rest_on_demand() {
        let mut out = Output::streaming(record_batch);
        for i in 0..(2 * BATCH_DOCUMENTS + 5) {
            out.emit(&serde_json::json!({ "i": i })).unwrap();
        }
        out.flush();
        out.flush();
        SENT.with(|sent| assert_eq!(*sent.borrow(), [BATCH_DOCUMENTS, BATCH_DOCUMENTS, 5]));
        assert_eq!(out.count(), 2 * BATCH_DOCUMENTS as u64 + 5);
    }

    #[test]
    fn large_documents_flush_by_bytes() {
        let mut out = Output::streaming(record_batch);
        let blob = "x".repeat(BATCH_BYTES / 2);
        for _ in 0..4 {
            out.emit(&serde_json::json!({ "blob": blob })).unwrap();
        }
        SENT.with(|sent| assert_eq!(*sent.borrow(), [2, 2]));
    }

    #[test]
    fn stream_outputs_collect_without_flushing() {
        let mut out = Output::collecting();
        for i in 0..(BATCH_DOCUMENTS + 1) {
            out.emit_with_id(format!("k{i}"), &serde_json::json!({ "i": i }))
                .unwrap();
        }
        out.flush();
        let documents = out.into_documents();
        assert_eq!(documents.len(), BATCH_DOCUMENTS + 1);
        assert_eq!(documents[3].id.as_deref(), Some("k3"));
        assert_eq!(documents[3].json, r#"{"i":3}"#);
    }

    #[test]
    fn unserializable_documents_are_rejected() {
        let mut out = Output::collecting();
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        assert!(matches!(out.emit(&map), Err(AppError::Reject(_))));
    }
}
