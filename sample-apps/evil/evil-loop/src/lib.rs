//! Evil app: burns CPU in a loop; `iterations` bounds it (default: forever).

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};
use std::hint::black_box;

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let iterations: u64 = params::parse_or("iterations", u64::MAX)?;
    let mut x = 0u64;
    for i in 0..iterations {
        x = black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    black_box(x);
    Ok(Quality::default())
}
