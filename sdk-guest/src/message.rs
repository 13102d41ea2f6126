//! `Message`: one broker message handed to a stream app.

use crate::AppError;
use serde::de::DeserializeOwned;

/// One message from the tenant's stream.
#[derive(Debug, Clone)]
pub struct Message {
    /// Stable across redeliveries.
    pub id: String,
    /// The body as published.
    pub payload: Vec<u8>,
    /// The publisher's content type, if any.
    pub content_type: Option<String>,
    /// String headers as (name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// Which delivery this is, starting at 1.
    pub attempt: u32,
}

impl Message {
    /// The payload parsed as JSON; malformed JSON rejects the message with the parser's reason.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| AppError::reject(format!("message {} is not valid JSON: {e}", self.id)))
    }

    /// The payload as UTF-8 text; anything else rejects the message.
    pub fn text(&self) -> Result<&str, AppError> {
        std::str::from_utf8(&self.payload)
            .map_err(|e| AppError::reject(format!("message {} is not UTF-8: {e}", self.id)))
    }

    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Message {
        Message {
            id: "m1".to_owned(),
            payload: payload.to_vec(),
            content_type: None,
            headers: vec![("x-source".to_owned(), "sensor".to_owned())],
            attempt: 1,
        }
    }

    #[test]
    fn malformed_payloads_are_rejected_with_the_message_id() {
        let value: serde_json::Value = message(br#"{"a":1}"#).json().unwrap();
        assert_eq!(value["a"], 1);
        let error = message(b"{oops").json::<serde_json::Value>().unwrap_err();
        assert!(
            matches!(&error, AppError::Reject(reason) if reason.starts_with("message m1 is not valid JSON"))
        );
        assert!(matches!(message(&[0xff]).text(), Err(AppError::Reject(_))));
        assert_eq!(message(b"x").header("x-source"), Some("sensor"));
        assert_eq!(message(b"x").header("nope"), None);
    }
}
