//! The daas reader: a page of the tenant's documents in `_id` order. The filter, the
//! projection and the cursor are the client's and screened alike (see [`super::query`]);
//! MongoDB stops the query at `daas.max_query_ms`, and the host gives up on a server that
//! does not answer at all soon after.

use super::{DaasError, query};
use crate::platform::TenantRecord;
use crate::sink::SinkResolver;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use std::time::Duration;

/// What a read may take beyond its `maxTimeMS` on the client side (network, cursor) before
/// the host gives up on it too.
const READ_GRACE: Duration = Duration::from_millis(2_000);
/// MongoDB's error code for an operation stopped by its `maxTimeMS`.
const MAX_TIME_EXPIRED: i32 = 50;
/// Documents per page when the request names no limit (or the profile's maximum if lower).
const DEFAULT_LIMIT: u64 = 100;

/// A read as the client asked for it, unparsed.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest<'a> {
    /// A filter as JSON.
    pub filter: Option<&'a str>,
    /// A projection as JSON.
    pub projection: Option<&'a str>,
    /// Documents per page.
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<&'a str>,
}

/// A page of documents, in `_id` order.
#[derive(Debug, Clone)]
pub struct ReadPage {
    /// The documents.
    pub documents: Vec<Document>,
    /// The cursor of the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// A read checked and screened: what is sent to MongoDB.
struct Screened {
    filter: Document,
    projection: Option<Document>,
    limit: u64,
}

/// Reads a page of `collection` in the tenant's database.
pub async fn read(
    sinks: &SinkResolver,
    tenant: &TenantRecord,
    collection: &str,
    request: ReadRequest<'_>,
) -> Result<ReadPage, DaasError> {
    super::check_collection(collection)?;
    let screened = screen(tenant, request)?;
    let limit = screened.limit;
    let documents = find(sinks, tenant, collection, screened).await?;
    let next_cursor = if documents.len() as u64 == limit {
        documents
            .last()
            .and_then(|d| d.get("_id"))
            .map(encode_cursor)
    } else {
        None
    };
    Ok(ReadPage {
        documents,
        next_cursor,
    })
}

/// The request's limit within the profile's, and its filter, projection and cursor parsed
/// and screened: only allowed operators, at any depth.
fn screen(tenant: &TenantRecord, request: ReadRequest<'_>) -> Result<Screened, DaasError> {
    let max = tenant.profile.daas.max_read_limit;
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT.min(max));
    if !(1..=max).contains(&limit) {
        return Err(DaasError::Malformed(format!(
            "limit = {limit}: it must be 1..={max} (daas.max_read_limit)"
        )));
    }
    let mut filter = match request.filter {
        Some(text) => json_document("filter", text)?,
        None => Document::new(),
    };
    query::screen_filter(&filter).map_err(|e| DaasError::Malformed(e.to_string()))?;
    let projection = match request.projection {
        Some(text) => {
            let projection = json_document("projection", text)?;
            query::screen_projection(&projection)
                .map_err(|e| DaasError::Malformed(e.to_string()))?;
            Some(projection)
        }
        None => None,
    };
    if let Some(cursor) = request.cursor {
        let after = decode_cursor(cursor)?;
        filter = doc! { "$and": [filter, { "_id": { "$gt": after } }] };
        // The cursor is the client's too: what it decodes to is screened like the rest.
        query::screen_filter(&filter).map_err(|_| bad_cursor())?;
    }
    Ok(Screened {
        filter,
        projection,
        limit,
    })
}

/// Runs the screened query in `_id` order under the profile's time limit.
async fn find(
    sinks: &SinkResolver,
    tenant: &TenantRecord,
    collection: &str,
    screened: Screened,
) -> Result<Vec<Document>, DaasError> {
    let sink = sinks.resolve(tenant).await.map_err(DaasError::Sink)?;
    let max_time = Duration::from_millis(tenant.profile.daas.max_query_ms);
    let documents_collection = sink.database.collection::<Document>(collection);
    let mut find = documents_collection
        .find(screened.filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::try_from(screened.limit).unwrap_or(i64::MAX))
        .max_time(max_time);
    if let Some(projection) = screened.projection {
        find = find.projection(projection);
    }
    let too_slow = || DaasError::QueryTimeout(max_time.as_millis());
    // MongoDB stops the query at `maxTimeMS`; the host's own bound is there for a server
    // that does not answer at all.
    tokio::time::timeout(max_time + READ_GRACE, async {
        let cursor = find.await?;
        cursor.try_collect::<Vec<Document>>().await
    })
    .await
    .map_err(|_| too_slow())?
    .map_err(|e: mongodb::error::Error| match e.kind.as_ref() {
        ErrorKind::Command(c) if c.code == MAX_TIME_EXPIRED => too_slow(),
        // The server's own words about the query (unknown field type, bad regex…), without
        // the raw reply around them.
        ErrorKind::Command(c) => {
            DaasError::Malformed(format!("the query was refused: {}", c.message))
        }
        _ => {
            tracing::error!(tenant = %tenant.id, coredms = %sink.target.coredms, error = %e, "a daas read failed");
            DaasError::ReadFailed
        }
    })
}

fn json_document(what: &str, text: &str) -> Result<Document, DaasError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| DaasError::Malformed(format!("{what} is not JSON: {e}")))?;
    let bson = Bson::try_from(value)
        .map_err(|e| DaasError::Malformed(format!("{what} cannot be used: {e}")))?;
    match bson {
        Bson::Document(document) => Ok(document),
        _ => Err(DaasError::Malformed(format!("{what} is not a JSON object"))),
    }
}

fn bad_cursor() -> DaasError {
    DaasError::Malformed("cursor is not one this API returned".to_owned())
}

/// Cursors are the last `_id`, as canonical extended JSON in URL-safe hex: opaque to clients,
/// exact for every `_id` type.
fn encode_cursor(id: &Bson) -> String {
    hex::encode(id.clone().into_canonical_extjson().to_string())
}

fn decode_cursor(cursor: &str) -> Result<Bson, DaasError> {
    let text = hex::decode(cursor).map_err(|_| bad_cursor())?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|_| bad_cursor())?;
    Bson::try_from(value).map_err(|_| bad_cursor())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn cursors_round_trip_every_id_type() {
        for id in [
            Bson::ObjectId(ObjectId::new()),
            Bson::String("a b/c".into()),
            Bson::Int64(42),
        ] {
            assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
        }
        assert!(decode_cursor("zz").is_err());
    }
}
