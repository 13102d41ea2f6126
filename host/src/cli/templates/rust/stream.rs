//! {{name}}: a mysimbdp stream app. Each message must be a JSON object; it is stored with the
//! message id beside it. Anything else is rejected (dead-lettered).

use mysimbdp_sdk::{AppError, Message, Output, serde_json, stream_app};

#[stream_app]
fn process(message: &Message, out: &mut Output) -> Result<(), AppError> {
    let value: serde_json::Value = message.json()?;
    let serde_json::Value::Object(fields) = value else {
        return Err(AppError::reject(format!("message {} is not a JSON object", message.id)));
    };
    let mut document = serde_json::Map::new();
    document.insert("message_id".to_owned(), message.id.clone().into());
    document.extend(fields);
    out.emit(&document)?;
    Ok(())
}
