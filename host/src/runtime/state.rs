//! What a Store holds: the WASI context, the resource table, the memory limiter, captured
//! stdio and the per-call accounting the host imports charge against.

use super::bindings::Document;
use super::failure::{Usage, Violation};
use crate::config::{Budget, EngineConfig, SandboxLimits};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A batch of documents emitted by a batch app, with the position of its first document
/// among all documents of the call (for deterministic ids).
#[derive(Debug)]
pub struct OutputBatch {
    /// Position of `documents[0]` among the call's documents.
    pub first_index: u64,
    /// The documents, in the order the app emitted them.
    pub documents: Vec<Document>,
}

/// The data of one Store: one call into one app.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) call: CallState,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    /// A Store's data for one call: no preopens, no environment, no network; stdio captured.
    pub(crate) fn new(engine: &EngineConfig, limits: &SandboxLimits, call: CallState) -> Self {
        let stdout = CapturedOutput::new(limits.stdio_bytes);
        let stderr = CapturedOutput::new(limits.stdio_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resources);
        Self {
            wasi,
            table,
            limiter: Limiter::new(engine, limits),
            call,
            stdout,
            stderr,
        }
    }

    /// What the call used; `fuel` is filled in by the caller, who holds the Store.
    pub(crate) fn usage(&self, fuel: u64, started: Instant) -> Usage {
        Usage {
            fuel,
            duration: started.elapsed(),
            documents: self.call.documents,
            output_bytes: self.call.output_bytes,
            host_calls: self.call.host_calls,
            logs_dropped: self.call.logs_dropped,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

/// A call's wall-clock deadline, pushed back by the time the call spent waiting for its
/// document sink: a slow database slows an app down (backpressure) but must not make it miss
/// its deadline.
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    budget: Duration,
    waited_nanos: AtomicU64,
}

impl Clock {
    pub(crate) fn new(budget: Duration) -> Self {
        Self {
            start: Instant::now(),
            budget,
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// Credits time spent blocked on the sink.
    pub(crate) fn waited(&self, time: Duration) {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.waited_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// When the call's own time runs out, as of now.
    pub(crate) fn deadline(&self) -> Instant {
        self.start + self.budget + Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    /// Whether the call's own time has run out.
    pub(crate) fn passed(&self) -> bool {
        Instant::now() >= self.deadline()
    }
}

/// Per-call accounting and the call's inputs that host imports need.
pub(crate) struct CallState {
    /// Who is running, for log lines: tenant, app, job or batch.
    pub(crate) label: Arc<str>,
    pub(crate) params: Arc<BTreeMap<String, String>>,
    pub(crate) budget: Budget,
    pub(crate) max_documents_per_call: usize,
    pub(crate) max_document_bytes: usize,
    pub(crate) log_lines: u64,
    pub(crate) clock: Arc<Clock>,
    /// Where a batch app's documents go; `None` for stream apps, whose documents come back as
    /// the return value.
    pub(crate) output: Option<mpsc::Sender<OutputBatch>>,
    pub(crate) host_calls: u64,
    pub(crate) documents: u64,
    pub(crate) output_bytes: u64,
    pub(crate) logs_written: u64,
    pub(crate) logs_dropped: u64,
}

impl CallState {
    pub(crate) fn new(
        label: Arc<str>,
        params: Arc<BTreeMap<String, String>>,
        limits: &SandboxLimits,
        budget: Budget,
        output: Option<mpsc::Sender<OutputBatch>>,
    ) -> Self {
        Self {
            label,
            params,
            budget,
            max_documents_per_call: limits.max_documents_per_call,
            max_document_bytes: limits.max_document_bytes,
            log_lines: limits.log_lines,
            clock: Arc::new(Clock::new(budget.deadline)),
            output,
            host_calls: 0,
            documents: 0,
            output_bytes: 0,
            logs_written: 0,
            logs_dropped: 0,
        }
    }

    /// Every host import calls this first: a guest looping on cheap host calls is stopped
    /// here even if it burns little fuel.
    pub(crate) fn charge_host_call(&mut self) -> Result<(), Violation> {
        self.host_calls += 1;
        if self.host_calls > self.budget.host_calls {
            return Err(Violation::HostCalls(self.budget.host_calls));
        }
        Ok(())
    }

    /// Checks a batch of documents against the output caps and counts it. `what` names the
    /// call for the message (`emit`, or the stream message id).
    pub(crate) fn admit(&mut self, documents: &[Document], what: &str) -> Result<(), Violation> {
        if documents.len() > self.max_documents_per_call {
            return Err(Violation::Output(format!(
                "{what}: {} documents in one call, above the cap of {}",
                documents.len(),
                self.max_documents_per_call
            )));
        }
        let mut bytes = 0u64;
        for (i, document) in documents.iter().enumerate() {
            let len = document.json.len();
            if len > self.max_document_bytes {
                return Err(Violation::Output(format!(
                    "{what}: document {} is {len} bytes, above the cap of {}",
                    self.documents + i as u64,
                    self.max_document_bytes
                )));
            }
            if !crate::documents::looks_like_object(&document.json) {
                return Err(Violation::BadOutput(format!(
                    "{what}: document {} is not a JSON object: {:?}",
                    self.documents + i as u64,
                    document.json.chars().take(80).collect::<String>()
                )));
            }
            bytes += len as u64;
        }
        if self.output_bytes + bytes > self.budget.output_bytes {
            return Err(Violation::Output(format!(
                "{what}: output would reach {} bytes, above the cap of {}",
                self.output_bytes + bytes,
                self.budget.output_bytes
            )));
        }
        self.output_bytes += bytes;
        self.documents += documents.len() as u64;
        Ok(())
    }

    /// Splits newline-delimited JSON (`emit-ndjson`, or a stream outcome's `ndjson`) into
    /// documents, checks them against the same output caps as [`CallState::admit`] (each
    /// line counts as one document) and counts them. Empty and all-whitespace lines are
    /// skipped. Unlike `admit`, a line is not shape-checked here: a line that is not a JSON
    /// object (or not UTF-8, kept as an empty body) goes on to the writer, which refuses it
    /// alone, so one bad line never costs its neighbours.
    pub(crate) fn admit_ndjson(
        &mut self,
        lines: &[u8],
        what: &str,
    ) -> Result<Vec<Document>, Violation> {
        let mut documents = Vec::new();
        let mut bytes = 0u64;
        for line in lines.split(|&b| b == b'\n') {
            if line.trim_ascii().is_empty() {
                continue;
            }
            let index = self.documents + documents.len() as u64;
            if documents.len() >= self.max_documents_per_call {
                return Err(Violation::Output(format!(
                    "{what}: more than {} documents in one call, above the cap",
                    self.max_documents_per_call
                )));
            }
            if line.len() > self.max_document_bytes {
                return Err(Violation::Output(format!(
                    "{what}: document {index} is {} bytes, above the cap of {}",
                    line.len(),
                    self.max_document_bytes
                )));
            }
            bytes += line.len() as u64;
            if self.output_bytes + bytes > self.budget.output_bytes {
                return Err(Violation::Output(format!(
                    "{what}: output would reach {} bytes, above the cap of {}",
                    self.output_bytes + bytes,
                    self.budget.output_bytes
                )));
            }
            // Text that is not UTF-8 is not JSON either: an empty body makes the writer
            // refuse it as "not a JSON object" without storing a lossy copy.
            let json = std::str::from_utf8(line).map_or_else(|_| String::new(), str::to_owned);
            documents.push(Document { id: None, json });
        }
        self.output_bytes += bytes;
        self.documents += documents.len() as u64;
        Ok(documents)
    }
}

/// Caps linear memory and tables. Growth past a cap traps at once with a typed violation,
/// rather than handing the guest a failed `memory.grow` it would turn into an opaque abort.
/// Instances, memories and tables per Store are the engine's per-component counts: one Store
/// runs one component.
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    memories: usize,
    tables: usize,
}

impl Limiter {
    fn new(engine: &EngineConfig, limits: &SandboxLimits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes(),
            table_elements: limits.table_elements,
            instances: engine.core_instances_per_component as usize,
            memories: engine.memories_per_component as usize,
            tables: engine.tables_per_component as usize,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(Violation::Memory {
                desired,
                cap: self.memory_bytes,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(Violation::Table {
                desired,
                cap: self.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.memories
    }

    fn tables(&self) -> usize {
        self.tables
    }
}

/// A bounded capture of the guest's stdout or stderr: bytes past the cap are dropped (and
/// counted) instead of failing the guest's write, so chatty output never changes behaviour.
#[derive(Clone)]
pub(crate) struct CapturedOutput(Arc<Mutex<Captured>>);

struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl CapturedOutput {
    fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(Captured {
            bytes: Vec::new(),
            cap,
            dropped: 0,
        })))
    }

    /// What was captured, with a note when bytes were dropped.
    pub(crate) fn text(&self) -> String {
        let captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = String::from_utf8_lossy(&captured.bytes).into_owned();
        if captured.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes dropped]", captured.dropped));
        }
        text
    }

    fn write(&self, buf: &[u8]) {
        let mut captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = captured.cap.saturating_sub(captured.bytes.len());
        let kept = room.min(buf.len());
        captured.bytes.extend_from_slice(&buf[..kept]);
        captured.dropped += (buf.len() - kept) as u64;
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::batch::mysimbdp::ingest::{log, params};

    fn state(limits: SandboxLimits) -> HostState {
        let budget = limits.budget(0);
        let params = Arc::new(BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        HostState::new(
            &EngineConfig::default(),
            &limits,
            CallState::new("test".into(), params, &limits, budget, None),
        )
    }

    fn doc(json: &str) -> Document {
        Document {
            id: None,
            json: json.to_owned(),
        }
    }

    #[test]
    fn admit_counts_and_enforces_each_cap() {
        let limits = SandboxLimits {
            max_documents_per_call: 2,
            max_document_bytes: 10,
            output_mib: 1,
            ..SandboxLimits::default()
        };
        let mut call = state(limits).call;
        call.admit(&[doc("{}"), doc("{\"a\":1}")], "emit").unwrap();
        assert_eq!((call.documents, call.output_bytes), (2, 9));
        let too_many = call
            .admit(&[doc("{}"), doc("{}"), doc("{}")], "emit")
            .unwrap_err();
        assert!(matches!(too_many, Violation::Output(m) if m.contains("3 documents")));
        let too_big = call.admit(&[doc("{\"abcdefgh\":1}")], "emit").unwrap_err();
        assert!(matches!(too_big, Violation::Output(m) if m.contains("document 2 is 14 bytes")));
        let not_object = call.admit(&[doc("[]")], "emit").unwrap_err();
        assert!(matches!(not_object, Violation::BadOutput(_)));
        assert_eq!(call.documents, 2, "refused batches are not counted");
        call.output_bytes = (1 << 20) - 1;
        assert!(
            matches!(call.admit(&[doc("{}")], "emit"), Err(Violation::Output(m)) if m.contains("output would reach"))
        );
    }

    #[test]
    fn admit_ndjson_splits_skips_blank_lines_and_keeps_bad_ones_in_place() {
        let mut call = state(SandboxLimits::default()).call;
        call.documents = 3;
        let documents = call
            .admit_ndjson(b"{\"a\":1}\n\n \t\r\n[1]\n\xff\n{}", "emit-ndjson")
            .unwrap();
        let bodies: Vec<&str> = documents.iter().map(|d| d.json.as_str()).collect();
        assert_eq!(bodies, ["{\"a\":1}", "[1]", "", "{}"]);
        assert_eq!((call.documents, call.output_bytes), (7, 7 + 3 + 1 + 2));
        assert!(call.admit_ndjson(b"", "emit-ndjson").unwrap().is_empty());
        assert!(
            call.admit_ndjson(b"\n\n", "emit-ndjson")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn admit_ndjson_applies_every_cap_per_line() {
        let limits = SandboxLimits {
            max_documents_per_call: 2,
            max_document_bytes: 10,
            output_mib: 1,
            ..SandboxLimits::default()
        };
        let mut call = state(limits).call;
        let too_many = call
            .admit_ndjson(b"{}\n{}\n{}\n", "emit-ndjson")
            .unwrap_err();
        assert!(
            matches!(&too_many, Violation::Output(m) if m.contains("more than 2")),
            "{too_many:?}"
        );
        let too_big = call
            .admit_ndjson(b"{}\n{\"abcdefgh\":1}", "emit-ndjson")
            .unwrap_err();
        assert!(
            matches!(&too_big, Violation::Output(m) if m.contains("document 1 is 14 bytes")),
            "{too_big:?}"
        );
        assert_eq!(
            (call.documents, call.output_bytes),
            (0, 0),
            "refused buffers are not counted"
        );
        call.output_bytes = (1 << 20) - 1;
        let total = call.admit_ndjson(b"{}", "emit-ndjson").unwrap_err();
        assert!(
            matches!(&total, Violation::Output(m) if m.contains("output would reach")),
            "{total:?}"
        );
    }

    #[test]
    fn host_calls_are_capped() {
        let mut call = state(SandboxLimits {
            host_calls: 2,
            ..SandboxLimits::default()
        })
        .call;
        call.charge_host_call().unwrap();
        call.charge_host_call().unwrap();
        assert_eq!(call.charge_host_call(), Err(Violation::HostCalls(2)));
    }

    #[tokio::test]
    async fn log_lines_past_the_cap_are_dropped_and_counted() {
        let mut state = state(SandboxLimits {
            log_lines: 2,
            ..SandboxLimits::default()
        });
        for _ in 0..5 {
            log::Host::log(&mut state, log::Level::Info, "line".to_owned())
                .await
                .unwrap();
        }
        assert_eq!(
            (
                state.call.logs_written,
                state.call.logs_dropped,
                state.call.host_calls
            ),
            (2, 3, 5)
        );
    }

    #[tokio::test]
    async fn params_are_read_only_copies() {
        let mut state = state(SandboxLimits::default());
        assert_eq!(
            params::Host::get(&mut state, "k".to_owned()).await.unwrap(),
            Some("v".to_owned())
        );
        assert_eq!(
            params::Host::get(&mut state, "x".to_owned()).await.unwrap(),
            None
        );
        assert_eq!(
            params::Host::all(&mut state).await.unwrap(),
            [("k".to_owned(), "v".to_owned())]
        );
    }

    #[test]
    fn captured_output_is_bounded() {
        let captured = CapturedOutput::new(4);
        captured.write(b"abcdef");
        captured.write(b"gh");
        assert_eq!(captured.text(), "abcd\n[4 more bytes dropped]");
    }
}
