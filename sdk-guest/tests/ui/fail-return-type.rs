use mysimbdp_sdk::{Input, Output, Quality, batch_app};

#[batch_app]
fn ingest(input: &mut Input, out: &mut Output) -> Quality {
    Quality::default()
}

fn main() {}
