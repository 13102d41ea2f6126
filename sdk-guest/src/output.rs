//! `Output`: documents leave the app in batches, never one host call per document. Documents
//! without an id of their own travel as newline-delimited JSON (`emit-ndjson`, one buffer per
//! batch: far cheaper to build and to lift than a list of records); a document with its own
//! id travels as a record. The host stores both the same way, so the choice changes nothing
//! in the stored documents or their ids.

use crate::__private::bindings::mysimbdp::ingest::types::{Document, Documents};
use crate::AppError;
use serde::Serialize;

/// Flush to the host after this many documents ...
const BATCH_DOCUMENTS: usize = 2048;
/// ... or this many bytes of JSON, whichever comes first.
const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// Where a batch app's full batches go: the host's `emit` and `emit-ndjson`. Function
/// pointers rather than direct calls, so a stream app never links the batch-only import.
#[derive(Clone, Copy)]
pub(crate) struct Sink {
    pub(crate) records: fn(&[Document]),
    pub(crate) ndjson: fn(&[u8]),
}

/// Where an app puts its documents. In a batch app they are sent to the host in batches as
/// they accumulate; in a stream app they become the outcome of the current message.
pub struct Output {
    /// Buffered documents as records (those with their own id) ...
    records: Vec<Document>,
    /// ... or as newline-delimited JSON; at most one of the two holds documents, so the
    /// order of documents (which their derived ids depend on) is kept.
    lines: Vec<u8>,
    buffered: usize,
    bytes: usize,
    sink: Option<Sink>,
    emitted: u64,
}

impl Output {
    pub(crate) fn streaming(sink: Sink) -> Self {
        Self {
            records: Vec::new(),
            lines: Vec::with_capacity(BATCH_BYTES),
            buffered: 0,
            bytes: 0,
            sink: Some(sink),
            emitted: 0,
        }
    }

    pub(crate) fn collecting() -> Self {
        Self {
            records: Vec::new(),
            lines: Vec::new(),
            buffered: 0,
            bytes: 0,
            sink: None,
            emitted: 0,
        }
    }

    /// Emit one document: any value that serializes to a JSON object. The platform derives
    /// its `_id` deterministically, so a replay never duplicates it.
    pub fn emit<T: Serialize + ?Sized>(&mut self, document: &T) -> Result<(), AppError> {
        let start = self.lines.len();
        if let Err(e) = serde_json::to_writer(&mut self.lines, document) {
            self.lines.truncate(start);
            return Err(AppError::reject(format!("cannot serialize document: {e}")));
        }
        // Compact JSON never holds a raw newline, so the line is the whole document.
        let len = self.lines.len() - start;
        self.lines.push(b'\n');
        self.pushed_line(start, len);
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
        self.push_record(Document {
            id: Some(id.into()),
            json,
        });
        Ok(())
    }

    /// Emit a document that is already JSON object text.
    pub fn emit_json(&mut self, json: String) {
        // Text with a newline, or blank, cannot be one ndjson line (the host would split or
        // skip it), and text not even braced fails the whole call as a record (the host's
        // shape check) where a line would be refused alone: such text goes as a record, so
        // the app behaves exactly as before 0.2.0.
        let trimmed = json.trim_ascii();
        let braced = trimmed.starts_with('{') && trimmed.ends_with('}');
        if json.contains('\n') || !braced {
            self.push_record(Document { id: None, json });
        } else {
            let start = self.lines.len();
            self.lines.extend_from_slice(json.as_bytes());
            self.lines.push(b'\n');
            self.pushed_line(start, json.len());
        }
    }

    /// How many documents this output has taken so far.
    pub fn count(&self) -> u64 {
        self.emitted
    }

    /// Send what is buffered to the host now (batch apps flush on their own when full and
    /// when the app returns).
    pub fn flush(&mut self) {
        let Some(sink) = self.sink else {
            return;
        };
        if !self.records.is_empty() {
            (sink.records)(&self.records);
            self.records.clear();
        }
        if !self.lines.is_empty() {
            (sink.ndjson)(&self.lines);
            self.lines.clear();
        }
        self.buffered = 0;
        self.bytes = 0;
    }

    /// A stream message's outcome: its documents in one encoding.
    pub(crate) fn into_documents(self) -> Documents {
        if self.records.is_empty() {
            Documents::Ndjson(self.lines)
        } else {
            Documents::Records(self.records)
        }
    }

    /// Counts the line just appended at `start`, keeping the one-encoding rule: with records
    /// buffered, a batch app sends them first; a stream app's outcome turns the line into a
    /// record too.
    fn pushed_line(&mut self, start: usize, len: usize) {
        if !self.records.is_empty() {
            let line = self.lines.split_off(start);
            if self.sink.is_some() {
                self.flush();
                self.lines = line;
            } else {
                let json = String::from_utf8_lossy(&line[..len]).into_owned();
                self.records.push(Document { id: None, json });
            }
        }
        self.counted(len);
    }

    fn push_record(&mut self, document: Document) {
        if !self.lines.is_empty() {
            if self.sink.is_some() {
                self.flush();
            } else {
                self.records = lines_as_records(&std::mem::take(&mut self.lines));
            }
        }
        let len = document.json.len();
        self.records.push(document);
        self.counted(len);
    }

    fn counted(&mut self, len: usize) {
        self.bytes += len;
        self.buffered += 1;
        self.emitted += 1;
        if self.sink.is_some() && (self.buffered >= BATCH_DOCUMENTS || self.bytes >= BATCH_BYTES) {
            self.flush();
        }
    }
}

/// Buffered lines (all written by this module, so valid UTF-8, one document each) as records.
fn lines_as_records(lines: &[u8]) -> Vec<Document> {
    lines
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| Document {
            id: None,
            json: String::from_utf8_lossy(line).into_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// What each host call received: ("records" | "ndjson", documents).
        static SENT: RefCell<Vec<(&'static str, Vec<String>)>> = const { RefCell::new(Vec::new()) };
    }

    fn record_batch(documents: &[Document]) {
        let texts = documents
            .iter()
            .map(|d| {
                format!(
                    "{}{}",
                    d.id.as_deref().map_or(String::new(), |id| format!("{id}=")),
                    d.json
                )
            })
            .collect();
        SENT.with(|sent| sent.borrow_mut().push(("records", texts)));
    }

    fn record_lines(lines: &[u8]) {
        let texts = lines_as_records(lines)
            .into_iter()
            .map(|d| d.json)
            .collect();
        SENT.with(|sent| sent.borrow_mut().push(("ndjson", texts)));
    }

    fn sent() -> Vec<(&'static str, Vec<String>)> {
        SENT.with(|sent| sent.borrow_mut().drain(..).collect())
    }

    fn streaming() -> Output {
        Output::streaming(Sink {
            records: record_batch,
            ndjson: record_lines,
        })
    }

    #[test]
    fn batch_apps_flush_full_batches_and_the_rest_on_demand() {
        let mut out = streaming();
        for i in 0..(2 * BATCH_DOCUMENTS + 5) {
            out.emit(&serde_json::json!({ "i": i })).unwrap();
        }
        out.flush();
        out.flush();
        let sizes: Vec<_> = sent().into_iter().map(|(how, d)| (how, d.len())).collect();
        assert_eq!(
            sizes,
            [
                ("ndjson", BATCH_DOCUMENTS),
                ("ndjson", BATCH_DOCUMENTS),
                ("ndjson", 5)
            ]
        );
        assert_eq!(out.count(), 2 * BATCH_DOCUMENTS as u64 + 5);
    }

    #[test]
    fn large_documents_flush_by_bytes() {
        let mut out = streaming();
        let blob = "x".repeat(BATCH_BYTES / 2);
        for _ in 0..4 {
            out.emit(&serde_json::json!({ "blob": blob })).unwrap();
        }
        let sizes: Vec<_> = sent().into_iter().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, [2, 2]);
    }

    #[test]
    fn batch_apps_keep_the_order_across_encodings() {
        let mut out = streaming();
        out.emit(&serde_json::json!({ "a": 1 })).unwrap();
        out.emit_with_id("k", &serde_json::json!({ "b": 2 }))
            .unwrap();
        out.emit_json("{\n\"c\": 3}".to_owned());
        out.emit_json(r#"{"d":4}"#.to_owned());
        out.flush();
        assert_eq!(
            sent(),
            [
                ("ndjson", vec![r#"{"a":1}"#.to_owned()]),
                (
                    "records",
                    vec![r#"k={"b":2}"#.to_owned(), "{\n\"c\": 3}".to_owned()]
                ),
                ("ndjson", vec![r#"{"d":4}"#.to_owned()]),
            ]
        );
        assert_eq!(out.count(), 4);
    }

    #[test]
    fn stream_outputs_collect_without_flushing() {
        let mut out = Output::collecting();
        for i in 0..(BATCH_DOCUMENTS + 1) {
            out.emit(&serde_json::json!({ "i": i })).unwrap();
        }
        out.flush();
        let Documents::Ndjson(lines) = out.into_documents() else {
            panic!("documents without ids travel as ndjson");
        };
        let documents = lines_as_records(&lines);
        assert_eq!(documents.len(), BATCH_DOCUMENTS + 1);
        assert_eq!(documents[3].json, r#"{"i":3}"#);
        assert!(sent().is_empty());
    }

    #[test]
    fn stream_outputs_with_ids_become_records_in_order() {
        let mut out = Output::collecting();
        out.emit(&serde_json::json!({ "i": 0 })).unwrap();
        out.emit_with_id("k1", &serde_json::json!({ "i": 1 }))
            .unwrap();
        out.emit(&serde_json::json!({ "i": 2 })).unwrap();
        let Documents::Records(documents) = out.into_documents() else {
            panic!("a document with an id makes the outcome records");
        };
        let got: Vec<_> = documents
            .iter()
            .map(|d| (d.id.as_deref(), d.json.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (None, r#"{"i":0}"#),
                (Some("k1"), r#"{"i":1}"#),
                (None, r#"{"i":2}"#)
            ]
        );
    }

    #[test]
    fn unserializable_documents_are_rejected_and_leave_nothing_behind() {
        let mut out = Output::collecting();
        out.emit(&serde_json::json!({ "ok": true })).unwrap();
        let map = std::collections::HashMap::from([((1, 2), 3)]);
        assert!(matches!(out.emit(&map), Err(AppError::Reject(_))));
        let Documents::Ndjson(lines) = out.into_documents() else {
            panic!("ndjson expected");
        };
        assert_eq!(lines, b"{\"ok\":true}\n");
    }
}
