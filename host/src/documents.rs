//! Documents as they leave an app: the checks every sink applies and deterministic `_id`s.
//!
//! The sandbox only does the cheap checks (sizes, counts, object shape) on the hot path; a
//! sink parses each document anyway (to BSON for MongoDB, to a value here), so the full JSON
//! check happens there, once.

use sha2::{Digest, Sha256};

/// Why a document cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {index} of {source_id}: {reason}")]
pub struct BadDocument {
    /// The file name or message id the document came from.
    pub source_id: String,
    /// Its position among the documents of that source.
    pub index: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// The `_id` the platform gives a document the app left without one: a hash of tenant,
/// source and position, so a replay of the same input produces the same ids.
pub fn derived_id(tenant: &str, source_id: &str, index: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update([0]);
    hasher.update(source_id.as_bytes());
    hasher.update([0]);
    hasher.update(index.to_be_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// A document's JSON as stored: its own id, or the one derived from tenant, source and
/// position (see [`with_id`]).
pub fn stored_json(
    tenant: &str,
    source: &str,
    index: u64,
    json: &str,
    id: Option<&str>,
) -> Result<String, String> {
    with_id(json, id, || derived_id(tenant, source, index))
}

/// The cheap shape check the sandbox applies to every document: braces at both ends.
pub fn looks_like_object(json: &str) -> bool {
    let trimmed = json.trim_ascii();
    trimmed.starts_with('{') && trimmed.ends_with('}')
}

/// Checks a document fully and returns its JSON text with `_id` set: the app's own id if it
/// gave one (in `id`, or as `_id` in the body), the derived one otherwise. The body keeps the
/// app's key order, with a new `_id` first.
pub fn with_id(
    json: &str,
    id: Option<&str>,
    derived: impl FnOnce() -> String,
) -> Result<String, String> {
    /// Reads only `_id`, skipping the rest without building it.
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "_id")]
        id: Option<serde::de::IgnoredAny>,
    }
    // The shape check first: serde would also read a struct from a JSON array.
    let body = json.trim_ascii();
    if !looks_like_object(body) {
        return Err("not a JSON object".to_owned());
    }
    let probe: Probe = serde_json::from_str(body).map_err(|e| format!("not a JSON object: {e}"))?;
    match (id, probe.id.is_some()) {
        (None, true) => Ok(body.to_owned()),
        // Rare: two ids; the explicit one wins, at the price of re-serializing the body.
        (Some(id), true) => {
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(body).map_err(|e| format!("not a JSON object: {e}"))?;
            object.insert("_id".to_owned(), id.into());
            serde_json::to_string(&object).map_err(|e| e.to_string())
        }
        (id, false) => {
            let id = id.map_or_else(derived, str::to_owned);
            let id = serde_json::to_string(&id).map_err(|e| e.to_string())?;
            let rest = body[1..].trim_ascii_start();
            Ok(if rest.starts_with('}') {
                format!("{{\"_id\":{id}}}")
            } else {
                format!("{{\"_id\":{id},{rest}")
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(derived_id("t", "f.csv", 7), derived_id("t", "f.csv", 7));
        assert_ne!(derived_id("t", "f.csv", 7), derived_id("t", "f.csv", 8));
        assert_ne!(derived_id("t", "f.csv", 7), derived_id("u", "f.csv", 7));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(derived_id("ab", "c", 0), derived_id("a", "bc", 0));
        assert_eq!(derived_id("t", "f", 0).len(), 32);
    }

    fn derived() -> String {
        "d".to_owned()
    }

    #[test]
    fn ids_come_from_the_app_first_and_key_order_is_kept() {
        assert_eq!(
            with_id(r#"{"z":1,"a":2}"#, None, derived).unwrap(),
            r#"{"_id":"d","z":1,"a":2}"#
        );
        assert_eq!(
            with_id(r#" { "b":1 } "#, Some("k\"1"), derived).unwrap(),
            r#"{"_id":"k\"1","b":1 }"#
        );
        assert_eq!(with_id("{}", None, derived).unwrap(), r#"{"_id":"d"}"#);
        assert_eq!(
            with_id("{ }", Some("k"), derived).unwrap(),
            r#"{"_id":"k"}"#
        );
        let inside = r#"{"a":1,"_id":{"$oid":"x"}}"#;
        assert_eq!(with_id(inside, None, derived).unwrap(), inside);
        let both: serde_json::Value =
            serde_json::from_str(&with_id(inside, Some("k"), derived).unwrap()).unwrap();
        assert_eq!(both["_id"], "k");
        let nested = with_id(r#"{"z":1,"a":[{}]}"#, None, derived).unwrap();
        assert_eq!(nested, r#"{"_id":"d","z":1,"a":[{}]}"#);
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(with_id("[1,2]", None, String::new).is_err());
        assert!(with_id("{\"a\":", None, String::new).is_err());
        assert!(with_id("{not json}", None, String::new).is_err());
        assert!(with_id(r#"{"_id":1,"_id":2}"#, None, String::new).is_err());
        assert!(!looks_like_object("[1]"));
        assert!(looks_like_object(" {\"a\":1}\n"));
    }
}
