//! Evil app: emits a document that is not a JSON object. `shape=array` (default) fails the
//! sandbox's cheap shape check at once; `shape=braces` looks like an object but does not
//! parse, which only the sink's full parse catches.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

#[batch_app]
fn ingest(_input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    out.emit(&serde_json::json!({ "fine": true }))?;
    match params::get("shape").as_deref() {
        Some("braces") => out.emit_json("{this is not JSON}".to_owned()),
        _ => out.emit_json("[1, 2, 3] is an array, not an object".to_owned()),
    }
    Ok(Quality::default())
}
