//! `mysimbdp stream create|list|show|start|stop|delete|stats|dead-letters|replay|publish`: a
//! tenant's streams over the API, and publishing a file of messages to a stream through the
//! tenant's publishing exchange, mandatory and with publisher confirms, over `amqps://` when
//! the platform gives that address (the broker verified as the API is, `--ca-cert` included).

use crate::client::{Client, TenantApi, error_chain, or_dash, print_json, segment};
use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, DefaultConnectionBuilder};
use mysimbdp_api::{
    ConnectionView, CreateStream, CreatedStream, DeadLetter, Replayed, StreamSeries, StreamStats,
    StreamView,
};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncBufReadExt;

/// `mysimbdp stream …`
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Create a stream consumed by a stream app; prints where to publish.
    Create(CreateArgs),
    /// List your streams.
    List {
        /// The API and the tenant's token.
        #[command(flatten)]
        api: TenantApi,
    },
    /// Show one stream.
    Show(NameArgs),
    /// Start a stopped stream.
    Start(NameArgs),
    /// Stop a stream: consumers finish their batch; messages wait in the queue.
    Stop(NameArgs),
    /// Delete a stream and its queues (refused while they hold messages, unless --force).
    Delete {
        /// Drop the messages still queued.
        #[arg(long)]
        force: bool,
        /// The stream.
        #[command(flatten)]
        stream: NameArgs,
    },
    /// A stream's figures: messages, throughput, latency, errors, consumers, decisions.
    Stats {
        /// The window, in seconds.
        #[arg(long, default_value_t = 60)]
        window: u64,
        /// The stream.
        #[command(flatten)]
        stream: NameArgs,
    },
    /// Publish a file of messages to a stream, with publisher confirms and a progress bar.
    Publish(PublishArgs),
    /// Show a stream's dead letters (left in place): class, reason, body.
    DeadLetters {
        /// How many at most (1-100).
        #[arg(long, default_value_t = 10)]
        limit: u64,
        /// The stream.
        #[command(flatten)]
        stream: NameArgs,
    },
    /// Send a stream's dead letters back through it (after fixing the app).
    Replay {
        /// How many at most (default: all).
        #[arg(long)]
        limit: Option<u64>,
        /// The stream.
        #[command(flatten)]
        stream: NameArgs,
    },
}

/// Arguments of `stream create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The stream's name.
    pub name: String,
    /// The stream app consuming it.
    #[arg(long)]
    pub app: String,
    /// An app parameter, `name=value`; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
    pub params: Vec<(String, String)>,
    /// The collection documents land in (default: the profile's).
    #[arg(long)]
    pub collection: Option<String>,
    /// Deliveries of a message before it is dead-lettered (default: the operator's).
    #[arg(long)]
    pub delivery_limit: Option<u32>,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// A stream and the API.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The stream's name.
    pub name: String,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// How a file splits into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One message per non-empty line (NDJSON, CSV rows, log lines).
    Lines,
    /// The whole file is one message.
    Whole,
}

/// Arguments of `stream publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The stream.
    #[arg(long)]
    pub stream: String,
    /// The file of messages.
    pub file: PathBuf,
    /// How the file splits into messages.
    #[arg(long, value_enum, default_value_t = Format::Lines)]
    pub format: Format,
    /// The messages' content type.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Messages awaiting their confirm at once.
    #[arg(long, default_value_t = 1000)]
    pub window: usize,
    /// The API and the tenant's token.
    #[command(flatten)]
    pub api: TenantApi,
}

/// Runs a `stream` command.
pub async fn run(command: StreamCommand) -> Result<ExitCode> {
    match command {
        StreamCommand::Create(args) => create(args).await,
        StreamCommand::List { api } => list(&api).await,
        StreamCommand::Show(args) => simple(&args, Method::GET, "").await,
        StreamCommand::Start(args) => simple(&args, Method::POST, "/start").await,
        StreamCommand::Stop(args) => simple(&args, Method::POST, "/stop").await,
        StreamCommand::Delete { force, stream } => delete(force, &stream).await,
        StreamCommand::Stats { window, stream } => stats(window, &stream).await,
        StreamCommand::Publish(args) => publish(args).await,
        StreamCommand::DeadLetters { limit, stream } => dead_letters(limit, &stream).await,
        StreamCommand::Replay { limit, stream } => replay(limit, &stream).await,
    }
}

/// `stream create`: prints the credentials and where to publish, which the tenant needs
/// to publish without this CLI.
async fn create(args: CreateArgs) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let body = CreateStream {
        name: args.name,
        app: args.app,
        params: args.params.into_iter().collect(),
        collection: args.collection,
        delivery_limit: args.delivery_limit,
    };
    let created: CreatedStream = client
        .send(client.request(Method::POST, "/v1/streams").json(&body))
        .await?;
    if args.api.json {
        print_json(&created)?;
    } else {
        let c = &created.connection;
        println!(
            "stream {} created; publish to exchange {:?} with routing key {:?} at {} as \
             user {} (password {})\ndead letters go to {:?}",
            created.stream.name,
            c.exchange,
            c.queue,
            c.url,
            c.user,
            c.password,
            c.dead_letter_queue,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `stream list`: a table, or the JSON array.
async fn list(api: &TenantApi) -> Result<ExitCode> {
    let client = Client::new(&api.api, &api.token, api.ca_cert.as_deref())?;
    let streams: Vec<StreamView> = client
        .send(client.request(Method::GET, "/v1/streams"))
        .await?;
    if api.json {
        print_json(&streams)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = streams
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.as_str().to_owned(),
                s.app.clone(),
                s.consumers.to_string(),
                s.running_consumers.to_string(),
                if s.throttled { "yes" } else { "no" }.to_owned(),
                s.queue.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::figures::table(
            &[
                "STREAM",
                "STATUS",
                "APP",
                "CONSUMERS",
                "RUNNING",
                "THROTTLED",
                "QUEUE"
            ],
            &[3, 4],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `stream delete`
async fn delete(force: bool, stream: &NameArgs) -> Result<ExitCode> {
    let client = Client::new(
        &stream.api.api,
        &stream.api.token,
        stream.api.ca_cert.as_deref(),
    )?;
    client
        .send_empty(client.request(
            Method::DELETE,
            &format!("/v1/streams/{}?force={force}", segment(&stream.name)),
        ))
        .await?;
    println!("stream {} deleted", stream.name);
    Ok(ExitCode::SUCCESS)
}

/// `stream stats`: the figures as text with sparklines of the window, or the API's JSON.
async fn stats(window: u64, stream: &NameArgs) -> Result<ExitCode> {
    let client = Client::new(
        &stream.api.api,
        &stream.api.token,
        stream.api.ca_cert.as_deref(),
    )?;
    let stats: StreamStats = client
        .send(client.request(
            Method::GET,
            &format!(
                "/v1/streams/{}/stats?window_secs={window}",
                segment(&stream.name)
            ),
        ))
        .await?;
    if stream.api.json {
        print_json(&stats)?;
    } else {
        // The curves over the same window (a minute at least, the series' shortest); a host
        // too old to draw them still gets its figures printed.
        let series: Option<StreamSeries> = client
            .send(client.request(
                Method::GET,
                &format!(
                    "/v1/streams/{}/series?window_secs={}&points=60",
                    segment(&stream.name),
                    window.max(60)
                ),
            ))
            .await
            .ok();
        print!("{}", crate::figures::stream_stats(&stats, series.as_ref()));
    }
    Ok(ExitCode::SUCCESS)
}

/// `stream dead-letters`: each letter's id, class, error and the start of its body.
async fn dead_letters(limit: u64, stream: &NameArgs) -> Result<ExitCode> {
    let client = Client::new(
        &stream.api.api,
        &stream.api.token,
        stream.api.ca_cert.as_deref(),
    )?;
    let letters: Vec<DeadLetter> = client
        .send(client.request(
            Method::GET,
            &format!(
                "/v1/streams/{}/dead-letters?limit={limit}",
                segment(&stream.name)
            ),
        ))
        .await?;
    if stream.api.json {
        print_json(&letters)?;
        return Ok(ExitCode::SUCCESS);
    }
    for letter in &letters {
        println!(
            "{} [{}] {}\n    {}",
            or_dash(&letter.message_id),
            or_dash(&letter.class),
            or_dash(&letter.error),
            letter.payload.chars().take(200).collect::<String>()
        );
    }
    if letters.is_empty() {
        println!("no dead letters");
    }
    Ok(ExitCode::SUCCESS)
}

/// `stream replay`
async fn replay(limit: Option<u64>, stream: &NameArgs) -> Result<ExitCode> {
    let client = Client::new(
        &stream.api.api,
        &stream.api.token,
        stream.api.ca_cert.as_deref(),
    )?;
    let query = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
    let replayed: Replayed = client
        .send(client.request(
            Method::POST,
            &format!(
                "/v1/streams/{}/dead-letters/replay{query}",
                segment(&stream.name)
            ),
        ))
        .await?;
    if stream.api.json {
        print_json(&replayed)?;
    } else {
        println!(
            "{} dead letter(s) sent back through {}",
            replayed.replayed, stream.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn simple(args: &NameArgs, method: Method, suffix: &str) -> Result<ExitCode> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let stream: StreamView = client
        .send(client.request(
            method,
            &format!("/v1/streams/{}{suffix}", segment(&args.name)),
        ))
        .await?;
    if args.api.json {
        print_json(&stream)?;
    } else {
        println!(
            "stream {}: {}, app {} ({}), {} consumer(s) wanted, {} running{}; queue {:?}, dead \
             letters {:?}",
            stream.name,
            stream.status.as_str(),
            stream.app,
            or_dash(&stream.version).get(..12).unwrap_or("-"),
            stream.consumers,
            stream.running_consumers,
            if stream.throttled { ", throttled" } else { "" },
            stream.queue,
            stream.dead_letter_queue,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a stream's messages go, besides the broker: the exchange and the routing key.
struct Route {
    /// Empty from a server before the publishing exchange: its tenants publish through the
    /// default exchange.
    exchange: String,
    queue: String,
}

/// What became of the messages sent so far.
#[derive(Default)]
struct Tally {
    sent: u64,
    confirmed: u64,
    refused: u64,
}

/// A message sent and not yet settled: the broker's confirm, and the bytes of the file it
/// stands for (the progress bar advances when it settles).
type Pending = VecDeque<(lapin::PublisherConfirm, u64)>;

/// Publishes every message of the file, keeping up to `--window` unconfirmed. Message ids
/// derive from the file's digest and the message's position, so publishing the same file
/// again is recognised downstream and writes no document twice.
async fn publish(args: PublishArgs) -> Result<ExitCode> {
    let (uri, route) = stream_connection(&args).await?;
    let digest = file_digest(&args.file).await?;
    let size = tokio::fs::metadata(&args.file)
        .await
        .with_context(|| format!("reading {:?}", args.file))?
        .len();
    let (amqp, channel) = open_confirmed_channel(uri, args.api.ca_cert.as_deref()).await?;
    let bar = progress_bar(size);
    let started = Instant::now();
    let tally = send_file(&args, &channel, &route, &digest, &bar).await?;
    bar.finish_and_clear();
    let _ = amqp.close(200, "published".into()).await;
    report_published(&args, &tally, size, started.elapsed().as_secs_f64())
}

/// Asks the API where and as whom to publish to the stream.
async fn stream_connection(args: &PublishArgs) -> Result<(AMQPUri, Route)> {
    let client = Client::new(&args.api.api, &args.api.token, args.api.ca_cert.as_deref())?;
    let connection: ConnectionView = client
        .send(client.request(
            Method::GET,
            &format!("/v1/streams/{}/connection", segment(&args.stream)),
        ))
        .await?;
    let mut uri: AMQPUri = connection
        .url
        .parse()
        .map_err(|e: String| anyhow!("the API gave a bad AMQP URL: {e}"))?;
    uri.authority.userinfo.username = connection.user;
    uri.authority.userinfo.password = connection.password;
    let route = Route {
        exchange: connection.exchange,
        queue: connection.queue,
    };
    Ok((uri, route))
}

/// Connects to the broker and opens a channel with publisher confirms.
async fn open_confirmed_channel(
    uri: AMQPUri,
    ca_cert: Option<&Path>,
) -> Result<(Connection, Channel)> {
    let amqp = connect_broker(uri, ca_cert).await?;
    let channel = amqp.create_channel().await.context("opening a channel")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    Ok((amqp, channel))
}

/// How long connecting to the broker (TCP, TLS, AMQP handshake) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects to a stream's broker at `uri` (with the stream's credentials in it). An `amqps://`
/// broker's certificate is verified against the system's roots and, if given, the CA in PEM
/// file `ca_cert` (`--ca-cert`, as for the API); nothing turns verification off. No crypto
/// provider needs installing first: lapin's rustls connector uses the process's default, and
/// installs aws-lc-rs (which reqwest uses here too) when there is none.
pub async fn connect_broker(uri: AMQPUri, ca_cert: Option<&Path>) -> Result<Connection> {
    let tls = match ca_cert {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading --ca-cert {}", path.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("--ca-cert {} holds no PEM certificate", path.display());
            }
            OwnedTLSConfig {
                identity: None,
                cert_chain: Some(pem),
            }
        }
        None => OwnedTLSConfig::default(),
    };
    // Where, without the credentials, for the messages below.
    let scheme = match uri.scheme {
        AMQPScheme::AMQPS => "amqps",
        AMQPScheme::AMQP => "amqp",
    };
    let broker = format!("{scheme}://{}:{}", uri.authority.host, uri.authority.port);
    let builder = DefaultConnectionBuilder::new()
        .context("starting the broker client")?
        .with_uri(uri)
        .with_properties(ConnectionProperties::default())
        .with_tls_config(tls);
    tokio::time::timeout(CONNECT_TIMEOUT, builder.connect())
        .await
        .map_err(|_| anyhow!("connecting to the broker at {broker} timed out"))?
        .map_err(|e| {
            // The TLS verdict is in the I/O error's sources.
            let reason = error_chain(&e);
            if reason.contains("NotValidForName") {
                anyhow!(
                    "the broker's certificate does not name {broker} ({reason}): connect with a \
                     name it was issued for"
                )
            } else if reason.contains("certificate") || reason.contains("UnknownIssuer") {
                anyhow!(
                    "the broker at {broker} presented a certificate this client does not trust \
                     ({reason}); if a private CA signed it, pass --ca-cert (or MYSIMBDP_CA_CERT) \
                     with that CA's PEM file"
                )
            } else {
                anyhow!(
                    "connecting to the broker at {broker} with the stream's credentials: {reason}"
                )
            }
        })
}

/// A bar over the file's bytes, advanced as messages settle.
fn progress_bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "publishing [{bar:32}] {binary_bytes}/{binary_total_bytes} {msg} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Sends the file's messages in order and waits until every one is settled.
async fn send_file(
    args: &PublishArgs,
    channel: &Channel,
    route: &Route,
    digest: &str,
    bar: &ProgressBar,
) -> Result<Tally> {
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("opening {:?}", args.file))?;
    let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
    let mut pending = Pending::new();
    let mut tally = Tally::default();
    let mut line = Vec::new();
    let mut position = 0u64;
    loop {
        let read = read_message(&mut reader, args.format, position, &mut line).await?;
        if read == 0 {
            break;
        }
        // Empty lines count as positions too: a message's id is its line number in the file.
        position += 1;
        let body = trim_line(&line);
        if body.is_empty() {
            bar.inc(read as u64);
            continue;
        }
        let message_id = format!("{digest}:{position}");
        let confirm = send_message(channel, route, body, message_id, &args.content_type).await?;
        tally.sent += 1;
        pending.push_back((confirm, read as u64));
        while pending.len() >= args.window.max(1) {
            settle(&mut pending, bar, &mut tally).await?;
        }
        if tally.sent % 1000 == 0 {
            bar.set_message(format!("{} messages", tally.sent));
        }
    }
    while !pending.is_empty() {
        settle(&mut pending, bar, &mut tally).await?;
    }
    Ok(tally)
}

/// Reads the next message into `line` and returns the bytes it took from the file, 0 at
/// the end. `position` is the count of messages read before; a whole file is one message.
async fn read_message(
    reader: &mut tokio::io::BufReader<tokio::fs::File>,
    format: Format,
    position: u64,
    line: &mut Vec<u8>,
) -> Result<usize> {
    line.clear();
    let read = match format {
        Format::Lines => reader
            .read_until(b'\n', line)
            .await
            .context("reading the file")?,
        Format::Whole if position == 0 => tokio::io::AsyncReadExt::read_to_end(reader, line)
            .await
            .context("reading the file")?,
        Format::Whole => 0,
    };
    Ok(read)
}

/// Publishes one persistent message, mandatory so an unroutable one comes back refused.
async fn send_message(
    channel: &Channel,
    route: &Route,
    body: &[u8],
    message_id: String,
    content_type: &str,
) -> Result<lapin::PublisherConfirm> {
    let properties = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type(content_type.into())
        .with_delivery_mode(2)
        .with_timestamp(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        );
    channel
        .basic_publish(
            route.exchange.as_str().into(),
            route.queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties,
        )
        .await
        .context("publishing")
}

/// Prints the summary (JSON on stdout, or a line on stderr); fails if the broker refused
/// any message.
fn report_published(args: &PublishArgs, tally: &Tally, size: u64, secs: f64) -> Result<ExitCode> {
    let Tally {
        sent,
        confirmed,
        refused,
    } = *tally;
    let summary = json!({
        "stream": args.stream,
        "messages": sent,
        "confirmed": confirmed,
        "refused": refused,
        "bytes": size,
        "seconds": secs,
        "messages_per_sec": if secs > 0.0 { confirmed as f64 / secs } else { 0.0 },
    });
    if args.api.json {
        print_json(&summary)?;
    } else {
        eprintln!(
            "published {confirmed} of {sent} messages to {} in {secs:.1} s ({:.0} messages/s){}",
            args.stream,
            summary["messages_per_sec"].as_f64().unwrap_or_default(),
            if refused > 0 {
                format!("; the broker refused {refused}")
            } else {
                String::new()
            }
        );
    }
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits for the oldest pending confirm and counts it.
async fn settle(pending: &mut Pending, bar: &ProgressBar, tally: &mut Tally) -> Result<()> {
    let Some((confirm, bytes)) = pending.pop_front() else {
        return Ok(());
    };
    let confirmation = confirm.await.context("waiting for the broker's confirm")?;
    if confirmation.is_ack() && confirmation.take_message().is_none() {
        tally.confirmed += 1;
    } else {
        tally.refused += 1;
        if tally.refused == 1 {
            bar.suspend(|| {
                eprintln!(
                    "the broker refused or could not route a message (is the stream deleted?)"
                )
            });
        }
    }
    bar.inc(bytes);
    Ok(())
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

async fn file_digest(path: &PathBuf) -> Result<String> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {path:?}"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buffer)
            .await
            .with_context(|| format!("reading {path:?}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(&hasher.finalize()[..8]))
}
