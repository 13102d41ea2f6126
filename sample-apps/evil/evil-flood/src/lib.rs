//! Evil app: floods the output. `mode` picks the cap it attacks:
//! `per-call` (one call with `count` documents), `large` (one document of `kib` KiB),
//! `total` (`count` documents through the SDK, forever by default). Default: `per-call`.

use mysimbdp_sdk::__private::bindings::mysimbdp::ingest::{batch_output, types::Document};
use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

#[batch_app]
fn ingest(_input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    let mode = params::get("mode").unwrap_or_else(|| "per-call".to_owned());
    match mode.as_str() {
        "per-call" => {
            let count: usize = params::parse_or("count", 100_000)?;
            let docs: Vec<Document> = (0..count)
                .map(|i| Document {
                    id: None,
                    json: format!("{{\"i\":{i}}}"),
                })
                .collect();
            batch_output::emit(&docs);
        }
        "large" => {
            let kib: usize = params::parse_or("kib", 64 * 1024)?;
            out.emit(&serde_json::json!({ "blob": "x".repeat(kib * 1024) }))?;
        }
        "total" => {
            let count: u64 = params::parse_or("count", u64::MAX)?;
            let filler = "y".repeat(1000);
            for i in 0..count {
                out.emit(&serde_json::json!({ "i": i, "filler": filler }))?;
            }
        }
        other => return Err(AppError::reject(format!("unknown mode {other:?}"))),
    }
    Ok(Quality::default())
}
