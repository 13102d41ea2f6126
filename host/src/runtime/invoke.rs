//! Calls into an app: a fresh Store per call, the call under its epoch deadline and a tokio
//! timeout as a backstop, and every outcome mapped to a report or a typed failure.

use super::bindings::{AppError, Document, Documents, Message, Quality, v0_1};
use super::failure::{Failure, FailureClass, Usage, Violation, classify};
use super::host::input::InputFile;
use super::host::v0_1 as old;
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
        let pre = match &app.pre {
            AppPre::Batch(pre) => Versioned::V0_2(pre),
            AppPre::BatchV0_1(pre) => Versioned::V0_1(pre),
            AppPre::Stream(_) | AppPre::StreamV0_1(_) => {
                return Err(Failure::invalid(
                    "this is a stream app; it cannot ingest files",
                ));
            }
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
            match pre {
                Versioned::V0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let file = store.data_mut().table.push(file)?;
                    instance
                        .mysimbdp_ingest_batch_ingest()
                        .call_ingest(&mut store, file)
                        .await
                }
                Versioned::V0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let file = store.data_mut().table.push(file)?;
                    let result = instance
                        .mysimbdp_ingest_batch_ingest()
                        .call_ingest(&mut store, file)
                        .await?;
                    Ok(result.map(old::quality).map_err(old::app_error))
                }
            }
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
        let pre = match &app.pre {
            AppPre::Stream(pre) => Versioned::V0_2(pre),
            AppPre::StreamV0_1(pre) => Versioned::V0_1(pre),
            AppPre::Batch(_) | AppPre::BatchV0_1(_) => {
                return Err(Failure::invalid(
                    "this is a batch app; it cannot process messages",
                ));
            }
        };
        let input_bytes = messages.iter().map(|m| m.payload.len() as u64).sum();
        let budget = self.budget(options, input_bytes)?;
        let mut store = self.new_store(options, budget, None)?;
        let started = Instant::now();
        let clock = store.data().call.clock.clone();
        let result = backstop(&clock, async {
            match pre {
                Versioned::V0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .mysimbdp_ingest_stream_ingest()
                        .call_process(&mut store, messages)
                        .await
                }
                Versioned::V0_1(pre) => {
                    // 0.1.0's message is the same record under another Rust type: a copy,
                    // paid only by apps built before 0.2.0.
                    let messages: Vec<_> = messages.iter().map(old_message).collect();
                    let instance = pre.instantiate_async(&mut store).await?;
                    let outcomes = instance
                        .mysimbdp_ingest_stream_ingest()
                        .call_process(&mut store, &messages)
                        .await?;
                    Ok(outcomes
                        .into_iter()
                        .map(|outcome| {
                            outcome
                                .map(|documents| {
                                    Documents::Records(
                                        documents.into_iter().map(old::document).collect(),
                                    )
                                })
                                .map_err(old::app_error)
                        })
                        .collect())
                }
            }
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
            .map(|(outcome, message)| {
                let what = || format!("message {}", message.id);
                let admitted = match outcome {
                    Ok(Documents::Records(documents)) => {
                        call.admit(&documents, &what()).map(|()| documents)
                    }
                    Ok(Documents::Ndjson(lines)) => call.admit_ndjson(&lines, &what()),
                    Err(error) => return Err(app_failure(error, Usage::default())),
                };
                admitted.map_err(|violation| Failure::new(violation.class(), violation.to_string()))
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
                AppPre::BatchV0_1(pre) => pre.instantiate_async(&mut store).await.map(drop),
                AppPre::StreamV0_1(pre) => pre.instantiate_async(&mut store).await.map(drop),
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
        let mut store = Store::new(
            &self.engine,
            HostState::new(&self.config.engine, &options.limits, call),
        );
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

/// An app's pre-linked instance in the version it was built against.
enum Versioned<'a, New, Old> {
    V0_2(&'a New),
    V0_1(&'a Old),
}

/// A message as a 0.1.0 app receives it.
fn old_message(
    message: &Message,
) -> v0_1::stream::exports::mysimbdp::ingest::stream_ingest::Message {
    v0_1::stream::exports::mysimbdp::ingest::stream_ingest::Message {
        id: message.id.clone(),
        payload: message.payload.clone(),
        content_type: message.content_type.clone(),
        headers: message.headers.clone(),
        attempt: message.attempt,
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
