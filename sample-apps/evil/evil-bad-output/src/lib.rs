//! Evil app: emits text that is not a JSON object.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

#[batch_app]
fn ingest(_input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    out.emit_json("[1, 2, 3] is an array, not an object".to_owned());
    Ok(Quality::default())
}
