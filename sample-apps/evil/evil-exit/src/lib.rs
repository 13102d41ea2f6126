//! Evil app: calls `exit` mid-call, as if it could end the host process.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    std::process::exit(0)
}
