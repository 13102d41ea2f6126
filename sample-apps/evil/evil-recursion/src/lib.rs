//! Evil app: recurses without end; `depth` bounds it (default: forever).

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

/// No local has its address taken, so every frame lives on the wasm (native) stack rather
/// than Rust's shadow stack in linear memory, and the rotate keeps LLVM from turning the
/// recursion into a loop.
#[inline(never)]
fn dive(left: u64) -> u64 {
    if left == 0 {
        return 1;
    }
    dive(left - 1).rotate_left(5) ^ left
}

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let depth: u64 = params::parse_or("depth", u64::MAX)?;
    if dive(depth) == 0 {
        mysimbdp_sdk::log::debug("unreachable: dive never returns 0");
    }
    Ok(Quality::default())
}
