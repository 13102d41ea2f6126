use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

#[batch_app(fast)]
fn ingest(input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    Ok(Quality::default())
}

fn main() {}
