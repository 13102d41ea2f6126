use mysimbdp_sdk::{AppError, Message, Output, stream_app};

#[stream_app]
fn process(message: &Message, out: &mut Output) -> Result<(), AppError> {
    let value: serde_json::Value = message.json()?;
    out.emit(&value)
}

fn main() {}
