//! Documents as they leave an app: the checks every sink applies and deterministic `_id`s.
//!
//! The sandbox only does the cheap checks (sizes, counts, object shape) on the hot path; a
//! sink parses each document anyway, so the full check happens there, once, by one rule for
//! every write path (batch, stream, daas, dry run): [`to_stored`] turns the JSON text straight
//! into the BSON bytes MongoDB stores — no intermediate tree, no reinterpretation of keys
//! (extended JSON is data here, not a type) — or refuses it with a reason that would be the
//! same on every retry.

use mongodb::bson::{RawArrayBuf, RawBson, RawBsonRef, RawDocumentBuf};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;

/// The largest document MongoDB stores, as BSON.
pub const MAX_BSON_BYTES: usize = 16 * 1024 * 1024;

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

/// How the platform derives the `_id` of a document its app left without one. Every scheme is
/// a pure function of (tenant, source, position), so a replayed job or a redelivered message
/// writes the same ids and nothing twice. Versioned because changing the function under a job
/// that is half written would duplicate its documents: a job (and a stream) keeps the scheme it
/// was created with, and records from before schemes were versioned read as [`Self::Hashed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdScheme {
    /// Version 1: 128 bits of SHA-256(tenant, source, position) as 32 hex digits. Every insert
    /// lands at a random place of the `_id` index, which slows MongoDB down as a collection
    /// outgrows its cache.
    #[default]
    Hashed,
    /// Version 2: ids that sort in the order documents were produced, so inserts append to
    /// the `_id` index instead of scattering. A batch file's: 64 bits of SHA-256(tenant,
    /// file) as 16 hex digits, `-`, the position as 16 hex digits. A stream message's: 64 bits
    /// of SHA-256(tenant, stream), `-`, the message id, `-`, the position within the message
    /// as 16 hex digits — ordered as the publisher's message ids are (a sequence, a timestamp,
    /// the CLI's `<file digest>:<line>` keep one source's messages together).
    Ordered,
}

impl IdScheme {
    /// The scheme new jobs and streams get.
    pub const CURRENT: Self = Self::Ordered;

    /// The ids of the documents of batch file `source`.
    pub fn ids(self, tenant: &str, source: &str) -> DerivedIds {
        let prefix = match self {
            Self::Hashed => None,
            Self::Ordered => Some(short_hash(tenant, source)),
        };
        DerivedIds {
            tenant: tenant.to_owned(),
            source: source.to_owned(),
            prefix,
        }
    }

    /// The ids of the documents of message `message_id` of `stream`.
    pub fn message_ids(self, tenant: &str, stream: &str, message_id: &str) -> DerivedIds {
        let source = format!("stream/{stream}/{message_id}");
        let prefix = match self {
            Self::Hashed => None,
            Self::Ordered => Some(format!(
                "{}-{message_id}",
                short_hash(tenant, &format!("stream/{stream}"))
            )),
        };
        DerivedIds {
            tenant: tenant.to_owned(),
            source,
            prefix,
        }
    }
}

/// 64 bits of SHA-256(tenant, source) as 16 hex digits.
fn short_hash(tenant: &str, source: &str) -> String {
    let digest = Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0])
        .chain_update(source.as_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

/// The derived ids of one source's documents, by position (the per-source part of the scheme
/// computed once).
#[derive(Debug, Clone)]
pub struct DerivedIds {
    tenant: String,
    source: String,
    /// The ordered scheme's prefix (everything but the position); `None` for the hashed one.
    prefix: Option<String>,
}

impl DerivedIds {
    /// The `_id` of the document at `index`.
    pub fn id(&self, index: u64) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}-{index:016x}"),
            None => derived_id(&self.tenant, &self.source, index),
        }
    }
}

/// The `_id` of the hashed scheme (version 1): a hash of tenant, source and position.
pub fn derived_id(tenant: &str, source: &str, index: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update([0]);
    hasher.update(source.as_bytes());
    hasher.update([0]);
    hasher.update(index.to_be_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// A document's JSON exactly as the sink stores it (relaxed extended JSON of its BSON, with
/// its own id or the one derived from tenant, source and position), or why the sink refuses
/// it — the dry run shows what a real run would store.
pub fn stored_json(
    ids: &DerivedIds,
    index: u64,
    json: &str,
    id: Option<&str>,
) -> Result<String, String> {
    let stored = to_stored(json, id, || ids.id(index))?;
    let document = stored
        .to_document()
        .map_err(|e| format!("cannot be stored: {e}"))?;
    Ok(mongodb::bson::Bson::Document(document)
        .into_relaxed_extjson()
        .to_string())
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

/// The document as the sink stores it: the JSON text as BSON, with `_id` first when the
/// platform adds it — the app's id (`id`), or `derived()`. Refused, with a reason, when it
/// cannot be stored exactly as emitted: not a JSON object, a top-level `$` field, a key with
/// NUL or given twice, an integer beyond 64 bits, an `_id` that is null or contradicts `id`,
/// or more than 16 MiB as BSON.
pub fn to_stored(
    json: &str,
    id: Option<&str>,
    derived: impl FnOnce() -> String,
) -> Result<RawDocumentBuf, String> {
    let body = json.trim_ascii();
    if !looks_like_object(body) {
        return Err("not a JSON object".to_owned());
    }
    let mut deserializer = serde_json::Deserializer::from_str(body);
    let (document, own_id) = Root
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => format!("cannot be stored: {e}"),
            _ => format!("not a JSON object: {e}"),
        })?;
    let stored = match (own_id, id) {
        (Some(Appended::Null), _) => {
            return Err("`_id` is null: every such document would share one id".to_owned());
        }
        (Some(Appended::String(own)), Some(id)) if own == id => document,
        (Some(_), Some(id)) => {
            return Err(format!(
                "the document has its own `_id` and the app also gave it the id {id:?}"
            ));
        }
        (Some(_), None) => document,
        (None, id) => with_id_first(document, &id.map_or_else(derived, str::to_owned))?,
    };
    let size = stored.as_bytes().len();
    if size > MAX_BSON_BYTES {
        return Err(format!(
            "it is {size} bytes as BSON; MongoDB stores documents of up to {MAX_BSON_BYTES}"
        ));
    }
    Ok(stored)
}

/// `document` with a string `_id` in front of its elements: one copy of its bytes, no
/// re-encoding of what the app emitted.
fn with_id_first(document: RawDocumentBuf, id: &str) -> Result<RawDocumentBuf, String> {
    const TYPE_STRING: u8 = 0x02;
    let body = document.into_bytes();
    let id_length = i32::try_from(id.len() + 1).map_err(|_| "the `_id` is too long".to_owned())?;
    let mut bytes = Vec::with_capacity(body.len() + id.len() + 10);
    bytes.extend_from_slice(&[0; 4]);
    bytes.push(TYPE_STRING);
    bytes.extend_from_slice(b"_id\0");
    bytes.extend_from_slice(&id_length.to_le_bytes());
    bytes.extend_from_slice(id.as_bytes());
    bytes.push(0);
    // The elements and the terminating NUL, after the body's own length.
    bytes.extend_from_slice(&body[4..]);
    let length = i32::try_from(bytes.len()).map_err(|_| "the document is too long".to_owned())?;
    bytes[..4].copy_from_slice(&length.to_le_bytes());
    RawDocumentBuf::from_bytes(bytes).map_err(|e| format!("cannot be stored: {e}"))
}

/// JSON nesting a document may have (MongoDB's own limit is 100 levels).
const MAX_DEPTH: usize = 100;

/// What a value written under a key was, as far as the `_id` checks need to know.
enum Appended {
    Null,
    String(String),
    Other,
}

/// Reads the top-level JSON object into BSON bytes, refusing `$` fields there, and tells
/// what its `_id` was, if it had one.
struct Root;

impl<'de> DeserializeSeed<'de> for Root {
    type Value = (RawDocumentBuf, Option<Appended>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root {
    type Value = (RawDocumentBuf, Option<Appended>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, entries: A) -> Result<Self::Value, A::Error> {
        fill(entries, 0, true)
    }
}

/// Reads a JSON object's entries into a new BSON document, each value written straight into
/// it. At the top level, `$` fields are refused and the `_id`'s kind is kept.
fn fill<'de, A: MapAccess<'de>>(
    mut entries: A,
    depth: usize,
    top: bool,
) -> Result<(RawDocumentBuf, Option<Appended>), A::Error> {
    use serde::de::Error;
    let inner = deeper::<A::Error>(depth)?;
    let mut document = RawDocumentBuf::new();
    let mut keys = Keys::default();
    let mut own_id = None;
    while let Some(key) = entries.next_key::<std::borrow::Cow<'de, str>>()? {
        if key.contains('\0') {
            return Err(A::Error::custom(format!(
                "the key {key:?} contains NUL, which BSON cannot store"
            )));
        }
        if top && key.starts_with('$') {
            return Err(A::Error::custom(format!(
                "field {key:?} starts with '$': MongoDB reads such fields as operators"
            )));
        }
        // Borrowed keys (no escapes) clone for free.
        if !keys.insert(key.clone()) {
            return Err(A::Error::custom(format!("the key {key:?} appears twice")));
        }
        let is_id = top && key == "_id";
        let appended = entries.next_value_seed(Entry {
            document: &mut document,
            key: &key,
            depth: inner,
            keep_string: is_id,
        })?;
        if is_id {
            own_id = Some(appended);
        }
    }
    Ok((document, own_id))
}

/// The keys of one object so far: a short list scanned in place (most documents have a few
/// dozen keys at most), a hash set past that.
#[derive(Default)]
struct Keys<'de> {
    few: Vec<std::borrow::Cow<'de, str>>,
    many: HashSet<std::borrow::Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    /// Past this many keys a lookup hashes instead of scanning.
    const SCAN: usize = 32;

    /// Adds `key`; false if the object already had it.
    fn insert(&mut self, key: std::borrow::Cow<'de, str>) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&key) {
                return false;
            }
            self.few.push(key);
            if self.few.len() > Self::SCAN {
                self.many.extend(self.few.drain(..));
            }
            true
        } else {
            self.many.insert(key)
        }
    }
}

/// Writes one JSON value into `document` under `key`.
struct Entry<'a> {
    document: &'a mut RawDocumentBuf,
    key: &'a str,
    depth: usize,
    /// Whether a string value is handed back (the `_id` checks compare it).
    keep_string: bool,
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = Appended;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Appended, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Entry<'_> {
    fn put(self, value: RawBsonRef<'_>) -> Appended {
        self.document.append_ref(self.key, value);
        Appended::Other
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = Appended;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Appended, E> {
        Ok(self.put(RawBsonRef::Boolean(value)))
    }

    // Integers take the same BSON types as arrays' do (see `Value`).
    fn visit_i64<E>(self, value: i64) -> Result<Appended, E> {
        Ok(self.put(RawBsonRef::Int64(value)))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Appended, E> {
        Ok(self.put(unsigned(value)?))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Appended, E> {
        Ok(self.put(RawBsonRef::Double(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Appended, E> {
        let keep = self.keep_string;
        self.put(RawBsonRef::String(value));
        Ok(if keep {
            Appended::String(value.to_owned())
        } else {
            Appended::Other
        })
    }

    fn visit_unit<E>(self) -> Result<Appended, E> {
        self.put(RawBsonRef::Null);
        Ok(Appended::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, items: A) -> Result<Appended, A::Error> {
        let array = Value { depth: self.depth }.visit_seq(items)?;
        self.document.append(self.key, array);
        Ok(Appended::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, entries: A) -> Result<Appended, A::Error> {
        let (child, _) = fill(entries, self.depth, false)?;
        Ok(self.put(RawBsonRef::Document(&child)))
    }
}

/// A non-negative integer as the smallest BSON integer that holds it.
fn unsigned<'a, E: serde::de::Error>(value: u64) -> Result<RawBsonRef<'a>, E> {
    if let Ok(small) = i32::try_from(value) {
        Ok(RawBsonRef::Int32(small))
    } else if let Ok(large) = i64::try_from(value) {
        Ok(RawBsonRef::Int64(large))
    } else {
        Err(E::custom(format!(
            "the integer {value} does not fit in BSON's 64-bit integers; emit it as a string"
        )))
    }
}

/// The depth below `depth`, unless that passes [`MAX_DEPTH`].
fn deeper<E: serde::de::Error>(depth: usize) -> Result<usize, E> {
    if depth >= MAX_DEPTH {
        Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")))
    } else {
        Ok(depth + 1)
    }
}

/// Reads one JSON value inside an array into BSON.
#[derive(Clone, Copy)]
struct Value {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Value {
    type Value = RawBson;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawBson, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value {
    type Value = RawBson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<RawBson, E> {
        Ok(RawBson::Boolean(value))
    }

    // Non-negative integers take the smallest BSON integer that holds them, negative ones
    // 64 bits.
    fn visit_i64<E>(self, value: i64) -> Result<RawBson, E> {
        Ok(RawBson::Int64(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawBson, E> {
        Ok(unsigned::<E>(value)?.to_raw_bson())
    }

    fn visit_f64<E>(self, value: f64) -> Result<RawBson, E> {
        Ok(RawBson::Double(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<RawBson, E> {
        Ok(RawBson::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<RawBson, E> {
        Ok(RawBson::String(value))
    }

    fn visit_unit<E>(self) -> Result<RawBson, E> {
        Ok(RawBson::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<RawBson, A::Error> {
        let inner = Value {
            depth: deeper::<A::Error>(self.depth)?,
        };
        let mut array = RawArrayBuf::new();
        while let Some(item) = items.next_element_seed(inner)? {
            array.push(item);
        }
        Ok(RawBson::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, entries: A) -> Result<RawBson, A::Error> {
        let (document, _) = fill(entries, self.depth, false)?;
        Ok(RawBson::Document(document))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_by_position_within_a_source() {
        let ids = IdScheme::Ordered.ids("t", "f.csv");
        assert_eq!(ids.id(7), IdScheme::Ordered.ids("t", "f.csv").id(7));
        assert_eq!(ids.id(0).len(), 33);
        assert!(ids.id(9) < ids.id(10) && ids.id(255) < ids.id(256));
        assert!(ids.id(u64::MAX - 1) < ids.id(u64::MAX));
        assert_ne!(ids.id(1), IdScheme::Ordered.ids("u", "f.csv").id(1));
        assert_ne!(ids.id(1), IdScheme::Ordered.ids("t", "g.csv").id(1));
        assert_ne!(
            IdScheme::Ordered.ids("ab", "c").id(0),
            IdScheme::Ordered.ids("a", "bc").id(0)
        );
        // A message's ids: its stream's prefix, the message id, the position.
        let message = IdScheme::Ordered.message_ids("t", "feed", "f00d:12");
        assert!(message.id(1).ends_with("-f00d:12-0000000000000001"));
        assert!(message.id(0) < IdScheme::Ordered.message_ids("t", "feed", "f00d:13").id(0));
        assert_ne!(
            message.id(0),
            IdScheme::Ordered.message_ids("t", "other", "f00d:12").id(0)
        );
        assert_eq!(
            IdScheme::Hashed.message_ids("t", "feed", "m").id(3),
            derived_id("t", "stream/feed/m", 3)
        );
        // The hashed scheme is version 1 unchanged: documents written before stay matched.
        assert_eq!(
            IdScheme::Hashed.ids("t", "f.csv").id(7),
            derived_id("t", "f.csv", 7)
        );
    }

    #[test]
    fn records_without_a_scheme_read_as_hashed() {
        #[derive(serde::Deserialize)]
        struct Record {
            #[serde(default)]
            ids: IdScheme,
        }
        let old: Record = serde_json::from_str("{}").unwrap();
        assert_eq!(old.ids, IdScheme::Hashed);
        let new: Record = serde_json::from_str(r#"{"ids":"ordered"}"#).unwrap();
        assert_eq!(new.ids, IdScheme::Ordered);
    }

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

#[cfg(test)]
mod stored_tests {
    use super::*;
    use mongodb::bson::{Bson, Document, doc};

    fn stored(json: &str, id: Option<&str>) -> Result<Document, String> {
        to_stored(json, id, || "d".to_owned()).map(|raw| raw.to_document().unwrap())
    }

    #[test]
    fn documents_are_stored_exactly_as_emitted() {
        assert_eq!(
            stored(
                r#"{"z":1,"a":-2,"f":1.5,"s":"x","b":true,"n":null,"l":[1,{"k":2}]}"#,
                None
            )
            .unwrap(),
            doc! { "_id": "d", "z": 1_i32, "a": -2_i64, "f": 1.5, "s": "x", "b": true,
            "n": Bson::Null, "l": [1_i32, { "k": 2_i32 }] }
        );
        // Extended JSON is data: nothing is reinterpreted, nothing dropped.
        let ext = stored(
            r#"{"p":{"note":"keep me","$numberLong":"5"},"d":{"$date":"x"}}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            ext.get_document("p").unwrap(),
            &doc! { "note": "keep me", "$numberLong": "5" }
        );
        assert_eq!(ext.get_document("d").unwrap(), &doc! { "$date": "x" });
        // The app's own id stays where it put it; a given id goes first.
        assert_eq!(
            stored(r#"{"a":1,"_id":7}"#, None).unwrap(),
            doc! { "a": 1_i32, "_id": 7_i32 }
        );
        assert_eq!(
            stored(r#"{"a":1}"#, Some("k")).unwrap(),
            doc! { "_id": "k", "a": 1_i32 }
        );
        assert_eq!(
            stored(r#"{"_id":"k","a":1}"#, Some("k")).unwrap(),
            doc! { "_id": "k", "a": 1_i32 }
        );
        assert_eq!(stored(" { } ", None).unwrap(), doc! { "_id": "d" });
        assert_eq!(
            stored(&format!("{{\"big\":{}}}", i64::MAX), None).unwrap(),
            doc! { "_id": "d", "big": i64::MAX }
        );
    }

    #[test]
    fn what_cannot_be_stored_as_emitted_is_refused_with_a_reason() {
        for (json, id, reason) in [
            ("[1]", None, "not a JSON object"),
            ("{\"a\":", None, "not a JSON object"),
            ("{\"a\":1 {\"b\":2}", None, "not a JSON object"),
            ("{\"a\":1} {\"b\":2}", None, "not a JSON object"),
            ("{this is not JSON}", None, "not a JSON object"),
            ("{\"a\\u0000b\":1}", None, "NUL"),
            ("{\"a\":{\"b\\u0000\":1}}", None, "NUL"),
            ("{\"a\":1,\"a\":2}", None, "twice"),
            ("{\"_id\":null}", None, "null"),
            ("{\"_id\":1}", Some("k"), "also gave"),
            ("{\"$set\":1}", None, "starts with '$'"),
            ("{\"n\":18446744073709551615}", None, "64-bit"),
        ] {
            let refused = stored(json, id).unwrap_err();
            assert!(refused.contains(reason), "{json}: {refused}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(120), "]".repeat(120));
        assert!(stored(&deep, None).is_err());
        let huge = format!("{{\"s\":\"{}\"}}", "x".repeat(MAX_BSON_BYTES));
        assert!(stored(&huge, None).unwrap_err().contains("16777216"));
    }
}
