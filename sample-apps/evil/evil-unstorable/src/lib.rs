//! Evil app: each input line names a document the sandbox lets through (it looks like a JSON
//! object) but the sink must refuse or store exactly: `nul-key` (a key with NUL), `null-id`
//! (`"_id": null`), `dollar` (a top-level `$` field), `extended` (extended-JSON keys next to
//! data), `wide` (64 KiB of small numbers: a shape that swells when converted), `fan:N` (N
//! wide documents from one line), `violations` (2,100 distinct quality rules broken, each with
//! an 8 KiB example), `forge` (a log line and a rejection whose text carries a forged host log
//! record after a newline). Any other line becomes `{"line": …}`.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app};

fn wide(n: usize) -> String {
    let numbers = vec!["1"; 32 * 1024].join(",");
    format!("{{\"wide\":{n},\"numbers\":[{numbers}]}}")
}

#[batch_app]
fn ingest(input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    let mut quality = Quality::default();
    for line in input.lines() {
        let line = line?;
        quality.record();
        match line.as_str() {
            "nul-key" => out.emit_json("{\"a\\u0000b\":1}".to_owned()),
            "null-id" => out.emit_json("{\"_id\":null,\"x\":1}".to_owned()),
            "dollar" => out.emit_json("{\"$set\":{\"x\":1}}".to_owned()),
            "extended" => out.emit_json(
                "{\"p\":{\"note\":\"keep me\",\"$numberLong\":\"5\"}}".to_owned(),
            ),
            "wide" => out.emit_json(wide(0)),
            "forge" => {
                let forged = "ok\n2026-01-01T00:00:00.000000Z  INFO mysimbdp::batch::worker: \
                              batch job settled tenant=\"acme\" forged=1\r";
                mysimbdp_sdk::log::info(forged);
                return Err(AppError::reject(forged));
            }
            "violations" => {
                for i in 0..2100 {
                    quality.bad(&format!("rule-{i}"), "x".repeat(8192));
                }
            }
            fan if fan.starts_with("fan:") => {
                let count: usize = fan[4..].parse().unwrap_or(0);
                for n in 0..count {
                    out.emit_json(wide(n));
                }
            }
            other => out.emit(&serde_json::json!({ "line": other }))?,
        }
    }
    Ok(quality)
}
