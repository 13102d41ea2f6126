//! Evil app: calls the host's log and params imports in a loop; `calls` bounds it.

use mysimbdp_sdk::__private::bindings::mysimbdp::ingest::{log, params as host_params};
use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

#[batch_app]
fn ingest(_input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    let calls: u64 = params::parse_or("calls", u64::MAX)?;
    for i in 0..calls {
        if i % 2 == 0 {
            log::log(log::Level::Debug, "spam");
        } else {
            std::hint::black_box(host_params::get("nothing"));
        }
    }
    Ok(Quality::default())
}
