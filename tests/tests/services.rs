//! Proves the services script brought up real Redis, RabbitMQ, MongoDB (as replica set rs0,
//! and a second server as rs1) and etcd that later tests can rely on; each check fails loudly when a service is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mysimbdp_tests::{AMQP_URL, ETCD_ENDPOINT, MONGODB_URI, MONGODB2_URI, REDIS_URL, unique};

#[tokio::test]
async fn redis_answers_and_stores() {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("Redis at {REDIS_URL} is unreachable (run scripts/services up): {e}")
        });
    let key = unique("services-test");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .arg("EX")
        .arg(60)
        .query_async(&mut connection)
        .await
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(value, "v");
}

#[tokio::test]
async fn rabbitmq_accepts_a_quorum_queue() {
    let connection = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ at {AMQP_URL} is unreachable (run scripts/services up): {e}")
        });
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-delivery-limit".into(),
        lapin::types::AMQPValue::LongInt(3),
    );
    let name = unique("services-test");
    let queue = channel
        .queue_declare(
            name.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 0);
    channel
        .queue_delete(
            name.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn mongodb_is_a_writable_replica_set() {
    writable_replica_set(MONGODB_URI, "rs0").await;
}

#[tokio::test]
async fn a_second_mongodb_serves_as_a_dedicated_coredms() {
    writable_replica_set(MONGODB2_URI, "rs1").await;
}

async fn writable_replica_set(uri: &str, set_name: &str) {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let hello = client
        .database("admin")
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .await
        .unwrap_or_else(|e| {
            panic!("MongoDB at {uri} is unreachable (run scripts/services up): {e}")
        });
    assert_eq!(hello.get_str("setName").unwrap(), set_name);
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    let collection = client
        .database("mysimbdp_services_test")
        .collection::<mongodb::bson::Document>("probe");
    let id = unique("doc");
    collection
        .insert_one(mongodb::bson::doc! { "_id": &id, "n": 1 })
        .await
        .unwrap();
    let found = collection
        .find_one(mongodb::bson::doc! { "_id": &id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.get_i32("n").unwrap(), 1);
    collection
        .delete_one(mongodb::bson::doc! { "_id": &id })
        .await
        .unwrap();
}

#[tokio::test]
async fn etcd_stores_keys() {
    let mut client = etcd_client::Client::connect([ETCD_ENDPOINT], None)
        .await
        .unwrap_or_else(|e| {
            panic!("etcd at {ETCD_ENDPOINT} is unreachable (run scripts/services up): {e}")
        });
    let key = format!("/mysimbdp-test/{}", unique("services"));
    client.put(key.as_str(), "v", None).await.unwrap();
    let response = client.get(key.as_str(), None).await.unwrap();
    assert_eq!(response.kvs()[0].value_str().unwrap(), "v");
    client.delete(key.as_str(), None).await.unwrap();
}
