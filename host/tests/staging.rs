//! The staging area's backends against their real stores: the same life of a file (staged,
//! read back, quarantined, released, archived, removed) in a directory and in GridFS on the
//! shared MongoDB; and what only GridFS has to prove: a file damaged in the store is refused
//! when read, an upload refused midway leaves nothing, and the sweep takes the uploads of dead
//! requests and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use mongodb::bson::{Binary, DateTime, Document, doc, spec::BinarySubtype};
use mysimbdp_host::batch::staging::{OpenError, StageError, Staging};
use mysimbdp_tests::prelude::*;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// `size` bytes of CSV-looking text, arriving in pieces of `piece` bytes.
fn upload(
    size: usize,
    piece: usize,
) -> (
    Vec<u8>,
    impl futures_util::Stream<Item = Result<Bytes, String>> + Unpin + Send,
) {
    let bytes: Vec<u8> = (0..size)
        .map(|i| {
            if i % 64 == 63 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let pieces: Vec<Result<Bytes, String>> = bytes
        .chunks(piece)
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    (bytes, futures_util::stream::iter(pieces))
}

async fn ensure_indexes(staging: &Staging) {
    let Staging::GridFs(gridfs) = staging else {
        panic!("not GridFS")
    };
    gridfs.ensure_indexes().await.unwrap();
}

/// A GridFS staging area in a database of its own, with its indexes.
async fn fresh_gridfs() -> (String, mongodb::Database, Staging) {
    let name = database_name();
    let database = mysimbdp_tests::services::mongo().await.database(&name);
    let staging = Staging::gridfs(&database);
    ensure_indexes(&staging).await;
    (name, database, staging)
}

/// Documents in `collection` of `database`.
async fn documents(database: &mongodb::Database, collection: &str) -> u64 {
    database
        .collection::<Document>(collection)
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// A marker time long past any sweep age.
fn an_hour_ago() -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000)
}

async fn read_all(staging: &Staging, tenant: &str, id: &str) -> std::io::Result<Vec<u8>> {
    let Ok(mut reader) = staging.open(tenant, id).await else {
        panic!("staged file {id} of {tenant} does not open");
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.map(|_| bytes)
}

/// A file's whole life in `staging`, as the workers and the API drive it.
async fn a_file_lives_through_its_areas(staging: &Staging) {
    let (bytes, body) = upload(700 * 1024 + 13, 64 * 1024);
    let file = staging.stage("acme", body, 1 << 20).await.unwrap();
    assert_eq!(file.size, bytes.len() as u64);
    assert_eq!(file.sha256, hex::encode(Sha256::digest(&bytes)));
    assert!(staging.exists("acme", &file.id).await.unwrap());
    assert!(
        !staging.exists("other", &file.id).await.unwrap(),
        "a tenant sees another's file"
    );
    assert_eq!(read_all(staging, "acme", &file.id).await.unwrap(), bytes);
    assert!(matches!(
        staging.open("other", &file.id).await,
        Err(OpenError::Gone(_))
    ));

    staging
        .quarantine("acme", &file.id, "reject: bad")
        .await
        .unwrap();
    assert!(!staging.exists("acme", &file.id).await.unwrap());
    // A replay by another tenant releases nothing.
    staging.release("other", &file.id).await.unwrap();
    assert!(!staging.exists("acme", &file.id).await.unwrap());
    staging.release("acme", &file.id).await.unwrap();
    assert!(staging.exists("acme", &file.id).await.unwrap());
    staging.archive("acme", &file.id).await.unwrap();
    assert!(!staging.exists("acme", &file.id).await.unwrap());
    // A second attempt's move of a moved file is no error.
    staging.archive("acme", &file.id).await.unwrap();

    let (_, body) = upload(1000, 100);
    let file = staging.stage("acme", body, 1 << 20).await.unwrap();
    staging.remove("acme", &file.id).await.unwrap();
    assert!(!staging.exists("acme", &file.id).await.unwrap());
    staging.remove("acme", &file.id).await.unwrap();

    let (_, body) = upload(2000, 100);
    let refused = staging.stage("acme", body, 1000).await.unwrap_err();
    assert!(matches!(refused, StageError::TooLarge { limit: 1000 }));
    let empty = futures_util::stream::iter(Vec::<Result<Bytes, String>>::new());
    assert!(matches!(
        staging.stage("acme", empty, 1000).await.unwrap_err(),
        StageError::Body(_)
    ));
    let broken = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"a,b\n")),
        Err("connection reset".to_owned()),
    ]);
    assert!(matches!(
        staging.stage("acme", broken, 1000).await.unwrap_err(),
        StageError::Body(_)
    ));
}

#[tokio::test]
async fn a_file_lives_the_same_in_a_directory() {
    let dir = scratch("staging-backends").join(unique("local"));
    let staging = Staging::local(&dir).unwrap();
    a_file_lives_through_its_areas(&staging).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_file_lives_the_same_in_gridfs() {
    let (name, database, staging) = fresh_gridfs().await;
    a_file_lives_through_its_areas(&staging).await;
    // The refused uploads left no chunk, file or marker behind.
    for (collection, left) in [
        ("staging.files", 1),
        ("staging.chunks", 3),
        ("staging.uploads", 0),
    ] {
        assert_eq!(
            documents(&database, collection).await,
            left,
            "{collection}: only the archived file may stay (1 file of 3 chunks)"
        );
    }
    drop_database(&name).await;
}

#[tokio::test]
async fn a_file_damaged_in_gridfs_is_refused_when_read() {
    let (name, database, staging) = fresh_gridfs().await;
    let chunks = database.collection::<Document>("staging.chunks");
    let stage = async || {
        let (_, body) = upload(600 * 1024, 32 * 1024);
        staging.stage("acme", body, 1 << 20).await.unwrap().id
    };

    // A byte changed.
    let flipped = stage().await;
    let mut data = vec![b'z'; 255 * 1024];
    data[0] = b'!';
    chunks
        .update_one(
            doc! { "files_id": &flipped, "n": 1 },
            doc! { "$set": { "data": Binary { subtype: BinarySubtype::Generic, bytes: data } } },
        )
        .await
        .unwrap();
    let error = read_all(&staging, "acme", &flipped).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("SHA-256"), "{error}");

    // A chunk lost.
    let holed = stage().await;
    chunks
        .delete_one(doc! { "files_id": &holed, "n": 1 })
        .await
        .unwrap();
    let error = read_all(&staging, "acme", &holed).await.unwrap_err();
    assert!(error.to_string().contains("chunk 1 is missing"), "{error}");

    // The tail lost.
    let cut = stage().await;
    chunks
        .delete_one(doc! { "files_id": &cut, "n": 2 })
        .await
        .unwrap();
    let error = read_all(&staging, "acme", &cut).await.unwrap_err();
    assert!(error.to_string().contains("bytes are there"), "{error}");
    drop_database(&name).await;
}

#[tokio::test]
async fn the_gridfs_sweep_takes_dead_uploads_only() {
    let (name, database, staging) = fresh_gridfs().await;
    let uploads = database.collection::<Document>("staging.uploads");
    let chunks = database.collection::<Document>("staging.chunks");
    let files = database.collection::<Document>("staging.files");
    let an_hour_ago = an_hour_ago();
    let chunk = |id: &str| {
        doc! {
            "files_id": id, "n": 0,
            "data": Binary { subtype: BinarySubtype::Generic, bytes: b"partial".to_vec() },
        }
    };
    // A request that died mid-upload an hour ago, and one streaming in now.
    let dead = "d".repeat(32);
    let live = "e".repeat(32);
    uploads
        .insert_one(doc! { "_id": &dead, "tenant": "acme", "touched": an_hour_ago })
        .await
        .unwrap();
    uploads
        .insert_one(doc! { "_id": &live, "tenant": "acme", "touched": DateTime::now() })
        .await
        .unwrap();
    chunks.insert_one(chunk(&dead)).await.unwrap();
    chunks.insert_one(chunk(&live)).await.unwrap();
    // An upload that finished, whose host died before dropping its marker.
    let (_, body) = upload(1000, 100);
    let finished = staging.stage("acme", body, 1 << 20).await.unwrap();
    uploads
        .insert_one(doc! { "_id": &finished.id, "tenant": "acme", "touched": an_hour_ago })
        .await
        .unwrap();

    let removed = staging
        .sweep_incoming(Duration::from_secs(900))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        chunks
            .count_documents(doc! { "files_id": &dead })
            .await
            .unwrap(),
        0,
        "the dead upload's chunks stayed"
    );
    assert_eq!(
        chunks
            .count_documents(doc! { "files_id": &live })
            .await
            .unwrap(),
        1,
        "a live upload was swept"
    );
    assert!(staging.exists("acme", &finished.id).await.unwrap());
    assert_eq!(files.count_documents(doc! {}).await.unwrap(), 1);
    let markers: Vec<String> = uploads
        .distinct("_id", doc! {})
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(markers, vec![live]);
    drop_database(&name).await;
}

#[tokio::test]
async fn the_chunks_index_exists_whatever_the_first_file() {
    let (name, database, staging) = fresh_gridfs().await;
    // Smaller than a chunk: the driver alone would create no index for it.
    let (bytes, body) = upload(1000, 100);
    let file = staging.stage("acme", body, 1 << 20).await.unwrap();
    assert_eq!(read_all(&staging, "acme", &file.id).await.unwrap(), bytes);
    let indexes = database
        .collection::<Document>("staging.chunks")
        .list_index_names()
        .await
        .unwrap();
    assert!(
        indexes.contains(&"files_id_1_n_1".to_owned()),
        "{indexes:?}"
    );
    drop_database(&name).await;
}

#[tokio::test]
async fn an_upload_the_sweep_took_for_dead_is_not_accepted() {
    let (name, database, staging) = fresh_gridfs().await;
    let uploads = database.collection::<Document>("staging.uploads");
    // A body that stalls after its first 300 KiB until told to go on.
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let first = Bytes::from(vec![b'a'; 300 * 1024]);
    let body =
        futures_util::stream::unfold((Some(first), Some(wait)), |(first, wait)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, String>(first), (None, wait)));
            }
            let wait = wait?;
            wait.await.unwrap();
            Some((Ok(Bytes::from_static(b"tail\n")), (None, None)))
        });
    let stalled = {
        let staging = staging.clone();
        tokio::spawn(async move { staging.stage("acme", Box::pin(body), 1 << 20).await })
    };
    wait_until(
        "the upload's first chunk is written",
        Duration::from_secs(30),
        async || documents(&database, "staging.chunks").await,
        |n| *n == 1,
    )
    .await;
    // Its host looks dead to the sweep (as a clock far off, or a pause past the age, would).
    let an_hour_ago = an_hour_ago();
    uploads
        .update_many(doc! {}, doc! { "$set": { "touched": an_hour_ago } })
        .await
        .unwrap();
    let removed = staging
        .sweep_incoming(Duration::from_secs(900))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    go_on.send(()).unwrap();
    let refused = stalled.await.unwrap().unwrap_err();
    assert!(
        matches!(&refused, StageError::Store(e) if format!("{e:#}").contains("swept")),
        "{refused:?}"
    );
    for collection in ["staging.files", "staging.chunks", "staging.uploads"] {
        assert_eq!(
            documents(&database, collection).await,
            0,
            "{collection} kept a part of the swept upload"
        );
    }
    drop_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_midway_leaves_nothing_staged() {
    use tokio::io::AsyncWriteExt;
    let database = database_name();
    let host = Host::start_with(&database, "control-plane-cache", |config| {
        config.batch.staging = mysimbdp_host::config::StagingBackend::Gridfs;
        config.server.upload_body_idle_timeout_ms = 1_000;
        config.server.upload_timeout_ms = 4_000;
    })
    .await;
    let tenant = unique("cut");
    let token = host.create_tenant(&tenant, None).await;
    let files = mysimbdp_tests::services::mongo()
        .await
        .database(&database)
        .collection::<Document>("staging.files");
    let staged = doc! { "metadata.tenant": &tenant };

    // A form whose first file arrives whole and whose second trickles past the upload's
    // whole-request bound: the first is staged, then the request is cut.
    let address = host.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let boundary = "cutcutcut";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"app\"\r\n\r\norders\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n",
        "a,b\n1,2\n".repeat(40_000)
    );
    stream
        .write_all(
            format!(
                "POST /v1/batch/files HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: multipart/form-data; boundary={boundary}\r\n\
                 Content-Length: {}\r\n\r\n{head}",
                head.len() + 1_000_000
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    wait_until(
        "the request's first file is staged",
        Duration::from_secs(3),
        async || files.count_documents(staged.clone()).await.unwrap(),
        |n| *n == 1,
    )
    .await;
    let trickle = tokio::spawn(async move {
        loop {
            if stream.write_all(b"3,4\n").await.is_err() {
                break;
            }
            // Not a gate: the trickle, within the idle bound, is what the test is about.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    wait_until(
        "the cut request's staged file is removed",
        Duration::from_secs(30),
        async || files.count_documents(staged.clone()).await.unwrap(),
        |n| *n == 0,
    )
    .await;
    trickle.abort();
    host.stop().await;
    drop_database(&database).await;
}
