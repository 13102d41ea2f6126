//! Test app: always fails with `retry`, as an app whose upstream is down would.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    Err(AppError::retry("upstream reference data is unavailable"))
}
