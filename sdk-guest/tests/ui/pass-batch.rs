use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

#[batch_app]
fn ingest(input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    let mut quality = Quality::default();
    for line in input.lines() {
        quality.record();
        out.emit(&serde_json::json!({ "line": line? }))?;
    }
    Ok(quality)
}

fn main() {}
