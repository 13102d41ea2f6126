//! Evil app: asks the host for stdout streams and never drops them, trying to grow the
//! host's resource table without bound; `count` bounds it (default: forever).

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let count: u64 = params::parse_or("count", u64::MAX)?;
    let mut hoard = Vec::new();
    for _ in 0..count {
        hoard.push(wasip2::cli::stdout::get_stdout());
    }
    Ok(Quality::default())
}
