//! Evil app: sleeps inside WASI's clock for `seconds` (default an hour). No wasm runs while
//! it waits, so only the host's timeout around the call can end it.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let seconds: u64 = params::parse_or("seconds", 3600)?;
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    Ok(Quality::default())
}
