//! Cleanup: each test removes what it wrote under its own names in MongoDB and etcd.

/// Deletes every etcd key a test wrote under its own prefix.
pub async fn clear_registry(database: &str) {
    crate::services::etcd()
        .await
        .delete(
            format!("/mysimbdp-test/{database}/"),
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
}

/// Drops a database of the shared MongoDB.
pub async fn drop_database(database: &str) {
    crate::services::mongo()
        .await
        .database(database)
        .drop()
        .await
        .unwrap();
}
