//! Test stream app for the platform's stream tests: each JSON message `{"n": 1, ...}` becomes
//! one document, unless it carries `"fail"`: `"reject"` (dead-letter it), `"retry"` (always
//! asks for a retry: a poison message that only the delivery limit ends), `"panic"` (traps,
//! taking the whole batch's instance with it), `"loop"` (spins until out of fuel),
//! `"nul-key"` (emits a document with a NUL in a key: it passes the sandbox, MongoDB cannot
//! store it), `"fan"` (emits `count` documents of 64 KiB of small numbers each: a shape that
//! swells when converted). The
//! `spin_us` parameter busy-waits that long per message, to make consumers slow on purpose.

use mysimbdp_sdk::{AppError, Message, Output, params, stream_app};
use serde_json::Value;

#[stream_app]
fn process(message: &Message, out: &mut Output) -> Result<(), AppError> {
    let body: Value = message.json()?;
    if let Some(spin) = params::get("spin_us").and_then(|s| s.parse::<u64>().ok()) {
        let started = std::time::Instant::now();
        while started.elapsed().as_micros() < u128::from(spin) {
            std::hint::spin_loop();
        }
    }
    match body.get("fail").and_then(Value::as_str) {
        Some("reject") => return Err(AppError::reject("the message asked to be rejected")),
        Some("retry") => return Err(AppError::retry("the message always asks for a retry")),
        Some("panic") => panic!("the message asked for a panic"),
        Some("nul-key") => {
            out.emit_json("{\"a\\u0000b\":1}".to_owned());
            return Ok(());
        }
        Some("fan") => {
            let count = body.get("count").and_then(Value::as_u64).unwrap_or(0);
            let numbers = vec!["1"; 32 * 1024].join(",");
            for n in 0..count {
                out.emit_json(format!("{{\"fan\":{n},\"numbers\":[{numbers}]}}"));
            }
            return Ok(());
        }
        Some("loop") => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        _ => {}
    }
    let mut document = serde_json::Map::new();
    document.insert("n".to_owned(), body.get("n").cloned().unwrap_or(Value::Null));
    document.insert("message".to_owned(), Value::String(message.id.clone()));
    document.insert("attempt".to_owned(), Value::from(message.attempt));
    out.emit(&document)?;
    Ok(())
}
