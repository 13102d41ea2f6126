//! Calls into an app: a fresh Store per call, the call under its epoch deadline and a tokio
//! timeout as a backstop, and every outcome mapped to a report or a typed failure.

use super::bindings::{AppError, Document, Message, Quality};
use super::failure::{Failure, FailureClass, Usage, Violation, classify};
use super::host::input::InputFile;
use super::state::{CallState, Clock, HostState, OutputBatch};
use super::{App, AppPre, Runtime};
use crate::config::{Budget, SandboxLimits};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use wasmtime::{Store, UpdateDeadline};

/// Who is calling and under which limits and parameters.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Names the call in logs: tenant, app, job.
    pub label: String,
    /// The tenant's parameters for the app.
    pub params: Arc<BTreeMap<String, String>>,
    /// The limits of this call (the tenant profile's, within the operator's).
    pub limits: SandboxLimits,
}

/// The staged file a batch app ingests.
pub struct BatchInput {
    /// The name the tenant uploaded it under.
    pub name: String,
    /// Its size in bytes (scales the call's budget).
    pub size: u64,
    /// Its content type, if known.
    pub content_type: Option<String>,
    /// Its bytes.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
}

impl BatchInput {
    /// Opens a local file.
    pub async fn open(path: &Path, content_type: Option<String>) -> anyhow::Result<Self> {
        use anyhow::Context;
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {path:?}"))?;
        let size = file
            .metadata()
            .await
            .with_context(|| format!("reading metadata of {path:?}"))?
            .len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            size,
            content_type,
            reader: Box::new(file),
        })
    }
}

/// A batch call that succeeded; its documents went to the sink.
#[derive(Debug)]
pub struct BatchReport {
    /// The app's quality metadata.
    pub quality: Quality,
    /// What the call used.
    pub usage: Usage,
}

/// The outcome of one stream message: its documents, or its own failure (`reject` or
/// `retry` from the app, `output-limit` or `bad-output` from the host's checks).
pub type MessageOutcome = Result<Vec<Document>, Failure>;

/// A stream call that ran to completion: one outcome per message, in order.
#[derive(Debug)]
pub struct StreamReport {
    /// One outcome per message.
    pub outcomes: Vec<MessageOutcome>,
    /// What the call used.
    pub usage: Usage,
}

/// The tokio timeout fires this long after the epoch deadline: the epoch check normally
/// ends the call first; the timeout catches a call stuck in a host import.
const BACKSTOP_GRACE: Duration = Duration::from_millis(250);

impl Runtime {
    /// Runs a batch app over one file; its documents go to `sink` in batches as emitted.
    /// The sink closes when this returns.
    pub async fn run_batch(
        &self,
        app: &App,
        input: BatchInput,
        options: &CallOptions,
        sink: mpsc::Sender<OutputBatch>,
    ) -> Result<BatchReport, Failure> {
        let AppPre::Batch(pre) = &app.pre else {
            return Err(Failure::invalid(
                "this is a stream app; it cannot ingest files",
            ));
        };
        let budget = self.budget(options, input.size)?;
        let mut store = self.new_store(options, budget, Some(sink))?;
        let started = Instant::now();
        let file = InputFile {
            name: input.name,
            size: input.size,
            content_type: input.content_type,
            reader: input.reader,
        };
        let clock = store.data().call.clock.clone();
        let result = backstop(&clock, async {
            let instance = pre.instantiate_async(&mut store).await?;
            let file = store.data_mut().table.push(file)?;
            instance
                .mysimbdp_ingest_batch_ingest()
                .call_ingest(&mut store, file)
                .await
        })
        .await;
        let usage = usage(&store, budget, started);
        match settle(result, budget, usage)? {
            (Ok(quality), usage) => Ok(BatchReport { quality, usage }),
            (Err(error), usage) => Err(app_failure(error, usage)),
        }
    }

    /// Runs a stream app on one batch of messages and returns one outcome per message.
    pub async fn run_stream(
        &self,
        app: &App,
        messages: &[Message],
        options: &CallOptions,
    ) -> Result<StreamReport, Failure> {
        let AppPre::Stream(pre) = &app.pre else {
            return Err(Failure::invalid(
                "this is a batch app; it cannot process messages",
            ));
        };
        let input_bytes = messages.iter().map(|m| m.payload.len() as u64).sum();
        let budget = self.budget(options, input_bytes)?;
        let mut store = self.new_store(options, budget, None)?;
        let started = Instant::now();
        let clock = store.data().call.clock.clone();
        let result = backstop(&clock, async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .mysimbdp_ingest_stream_ingest()
                .call_process(&mut store, messages)
                .await
        })
        .await;
        let (raw, mut usage) = settle(result, budget, usage(&store, budget, started))?;
        if raw.len() != messages.len() {
            return Err(Failure {
                class: FailureClass::BadOutput,
                message: format!("{} outcomes for {} messages", raw.len(), messages.len()),
                usage: Box::new(usage),
            });
        }
        let call = &mut store.data_mut().call;
        let outcomes: Vec<MessageOutcome> = raw
            .into_iter()
            .zip(messages)
            .map(|(outcome, message)| match outcome {
                Ok(documents) => match call.admit(&documents, &format!("message {}", message.id)) {
                    Ok(()) => Ok(documents),
                    Err(violation) => Err(Failure::new(violation.class(), violation.to_string())),
                },
                Err(error) => Err(app_failure(error, Usage::default())),
            })
            .collect();
        usage.documents = call.documents;
        usage.output_bytes = call.output_bytes;
        Ok(StreamReport { outcomes, usage })
    }

    /// Instantiates the app in a fresh Store under `options`' limits and drops it, running
    /// nothing but the component's start-up code: an admission smoke test, and the measure
    /// of per-call instantiation cost. Returns how long instantiation took.
    pub async fn smoke_instantiate(
        &self,
        app: &App,
        options: &CallOptions,
    ) -> Result<Duration, Failure> {
        let budget = self.budget(options, 0)?;
        let mut store = self.new_store(options, budget, None)?;
        let started = Instant::now();
        let clock = store.data().call.clock.clone();
        let result = backstop(&clock, async {
            match &app.pre {
                AppPre::Batch(pre) => pre.instantiate_async(&mut store).await.map(drop),
                AppPre::Stream(pre) => pre.instantiate_async(&mut store).await.map(drop),
            }
        })
        .await;
        let elapsed = started.elapsed();
        let usage = usage(&store, budget, started);
        settle(result, budget, usage)?;
        Ok(elapsed)
    }

    fn budget(&self, options: &CallOptions, input_bytes: u64) -> Result<Budget, Failure> {
        options
            .limits
            .validate(&self.config.engine)
            .map_err(|e| Failure::new(FailureClass::HostError, format!("{e:#}")))?;
        Ok(options.limits.budget(input_bytes))
    }

    /// A fresh Store for one call: fuel, memory limiter, and an epoch callback that yields to
    /// the executor every tick and traps once the wall-clock deadline has passed.
    fn new_store(
        &self,
        options: &CallOptions,
        budget: Budget,
        output: Option<mpsc::Sender<OutputBatch>>,
    ) -> Result<Store<HostState>, Failure> {
        let call = CallState::new(
            options.label.as_str().into(),
            options.params.clone(),
            &options.limits,
            budget,
            output,
        );
        let clock = call.clock.clone();
        let mut store = Store::new(&self.engine, HostState::new(&options.limits, call));
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(budget.fuel)
            .map_err(|e| Failure::new(FailureClass::HostError, format!("setting fuel: {e}")))?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if clock.passed() {
                Err(Violation::Deadline(budget.deadline).into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }
}

fn usage(store: &Store<HostState>, budget: Budget, started: Instant) -> Usage {
    let left = store.get_fuel().unwrap_or(0);
    store
        .data()
        .usage(budget.fuel.saturating_sub(left), started)
}

/// Turns a timed-out or trapped call into a typed failure; passes the app's result through.
/// The tokio backstop of a call: resolves to `TimedOut` once the call's (moving) deadline
/// plus the grace has passed.
async fn backstop<F: std::future::Future>(clock: &Clock, call: F) -> Result<F::Output, TimedOut> {
    tokio::pin!(call);
    loop {
        let at = tokio::time::Instant::from_std(clock.deadline() + BACKSTOP_GRACE);
        tokio::select! {
            output = &mut call => return Ok(output),
            () = tokio::time::sleep_until(at) => {
                if Instant::now() >= clock.deadline() + BACKSTOP_GRACE {
                    return Err(TimedOut);
                }
            }
        }
    }
}

/// A call the backstop ended.
struct TimedOut;

fn settle<T>(
    result: Result<wasmtime::Result<T>, TimedOut>,
    budget: Budget,
    usage: Usage,
) -> Result<(T, Usage), Failure> {
    match result {
        Ok(Ok(value)) => Ok((value, usage)),
        Ok(Err(error)) => {
            let (class, message) = classify(&error, budget.fuel, &usage.stderr);
            Err(Failure {
                class,
                message,
                usage: Box::new(usage),
            })
        }
        Err(_) => Err(Failure {
            class: FailureClass::Deadline,
            message: format!("the deadline of {:?} passed", budget.deadline),
            usage: Box::new(usage),
        }),
    }
}

fn app_failure(error: AppError, usage: Usage) -> Failure {
    let (class, message) = match error {
        AppError::Reject(reason) => (FailureClass::Reject, reason),
        AppError::Retry(reason) => (FailureClass::Retry, reason),
    };
    Failure {
        class,
        message,
        usage: Box::new(usage),
    }
}
