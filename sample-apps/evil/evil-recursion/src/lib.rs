//! Evil app: recurses with a fat frame; `depth` bounds it (default: forever).

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};
use std::hint::black_box;

fn dive(depth: u64, left: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if left == 0 {
        return frame[0];
    }
    black_box(dive(depth + 1, left - 1)) ^ frame[31]
}

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let depth: u64 = params::parse_or("depth", u64::MAX)?;
    black_box(dive(0, depth));
    Ok(Quality::default())
}
