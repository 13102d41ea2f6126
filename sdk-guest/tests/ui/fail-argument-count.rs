use mysimbdp_sdk::{AppError, Input, Quality, batch_app};

#[batch_app]
fn ingest(input: &mut Input) -> Result<Quality, AppError> {
    Ok(Quality::default())
}

fn main() {}
