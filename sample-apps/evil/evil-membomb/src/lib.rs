//! Evil app: allocates and touches 1 MiB blocks; `mib` bounds it (default: forever).

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};
use std::hint::black_box;

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let mib: u64 = params::parse_or("mib", u64::MAX)?;
    let mut hoard = Vec::new();
    for _ in 0..mib {
        hoard.push(black_box(vec![0xA5u8; 1 << 20]));
    }
    black_box(&hoard);
    Ok(Quality::default())
}
