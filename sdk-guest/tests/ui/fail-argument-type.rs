use mysimbdp_sdk::{AppError, Message, Output, stream_app};

#[stream_app]
fn process(message: &mut Message, out: &mut Output) -> Result<(), AppError> {
    Ok(())
}

fn main() {}
