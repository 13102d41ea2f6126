//! Evil app: panics with a message the host must capture from stderr.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

#[batch_app]
fn ingest(input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    panic!(
        "evil app panicked on purpose while reading {}",
        input.name()
    );
}
