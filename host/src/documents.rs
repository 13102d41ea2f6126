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

/// The cheap shape check the sandbox applies to every document: braces at both ends.
pub fn looks_like_object(json: &str) -> bool {
    let trimmed = json.trim_ascii();
    trimmed.starts_with('{') && trimmed.ends_with('}')
}

/// Parses a document fully and returns it as a JSON object with its `_id` set: the app's own
/// id if it gave one (in `id`, or as `_id` in the body), the derived one otherwise.
pub fn with_id(
    json: &str,
    id: Option<&str>,
    derived: impl FnOnce() -> String,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    match id {
        Some(id) => {
            object.insert("_id".to_owned(), id.into());
        }
        None if object.contains_key("_id") => {}
        None => {
            object.insert("_id".to_owned(), derived().into());
        }
    }
    Ok(object)
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

    #[test]
    fn ids_come_from_the_app_first() {
        let given = with_id(r#"{"a":1}"#, Some("k1"), || "derived".into()).unwrap();
        assert_eq!(given["_id"], "k1");
        let inside = with_id(r#"{"_id":"own","a":1}"#, None, || "derived".into()).unwrap();
        assert_eq!(inside["_id"], "own");
        let derived = with_id(r#"{"a":1}"#, None, || "derived".into()).unwrap();
        assert_eq!(derived["_id"], "derived");
    }

    #[test]
    fn non_objects_are_refused() {
        assert!(with_id("[1,2]", None, String::new).is_err());
        assert!(with_id("{\"a\":", None, String::new).is_err());
        assert!(!looks_like_object("[1]"));
        assert!(looks_like_object(" {\"a\":1}\n"));
    }
}
