//! The staging area's backends against their real stores: the same life of a file (staged,
//! read back, quarantined, released, archived, removed) in a directory and in GridFS on the
//! shared MongoDB; and what only GridFS has to prove: a file damaged in the store is refused
//! when read, an upload refused midway leaves nothing, and the sweep takes the uploads of dead
//! requests and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use mongodb::bson::{Binary, DateTime, Document, doc, spec::BinarySubtype};
use mysimbdp_host::batch::staging::{StageError, Staging};
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

async fn read_all(staging: &Staging, tenant: &str, id: &str) -> std::io::Result<Vec<u8>> {
    let mut reader = staging.open(tenant, id).await.unwrap();
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
    assert!(staging.open("other", &file.id).await.is_err());

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
    let name = database_name();
    let database = mysimbdp_tests::services::mongo().await.database(&name);
    let staging = Staging::gridfs(&database);
    a_file_lives_through_its_areas(&staging).await;
    // The refused uploads left no chunk, file or marker behind.
    for (collection, left) in [
        ("staging.files", 1),
        ("staging.chunks", 3),
        ("staging.uploads", 0),
    ] {
        let count = database
            .collection::<Document>(collection)
            .count_documents(doc! {})
            .await
            .unwrap();
        assert_eq!(
            count, left,
            "{collection}: only the archived file may stay (1 file of 3 chunks)"
        );
    }
    drop_database(&name).await;
}

#[tokio::test]
async fn a_file_damaged_in_gridfs_is_refused_when_read() {
    let name = database_name();
    let database = mysimbdp_tests::services::mongo().await.database(&name);
    let staging = Staging::gridfs(&database);
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
    let name = database_name();
    let database = mysimbdp_tests::services::mongo().await.database(&name);
    let staging = Staging::gridfs(&database);
    let uploads = database.collection::<Document>("staging.uploads");
    let chunks = database.collection::<Document>("staging.chunks");
    let files = database.collection::<Document>("staging.files");
    let an_hour_ago = DateTime::from_millis(DateTime::now().timestamp_millis() - 3_600_000);
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
