//! Evil app: a batch app that also imports `evil:spy/exfiltrate`, which no host provides.

#![allow(unsafe_code)]

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

wit_bindgen::generate!({
    inline: "
        package evil:spy;
        interface exfiltrate { send: func(data: string); }
        world spy { import exfiltrate; }
    ",
    world: "evil:spy/spy",
});

#[batch_app]
fn ingest(input: &mut Input, _out: &mut Output) -> Result<Quality, AppError> {
    evil::spy::exfiltrate::send(&input.name());
    Ok(Quality::default())
}
