//! Evil app: tries to leave the sandbox. `target=network` connects to `addr` (default the
//! local Redis), `target=file` reads `path` (default /etc/passwd), `target=env` lists the
//! environment. What it reaches, it emits; what it cannot, it rejects with the reason.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};

#[batch_app]
fn ingest(_input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    let target = params::get("target").unwrap_or_else(|| "network".to_owned());
    match target.as_str() {
        "network" => {
            let addr = params::get("addr").unwrap_or_else(|| "127.0.0.1:6379".to_owned());
            match std::net::TcpStream::connect(&addr) {
                Ok(_) => out.emit(&serde_json::json!({ "reached": addr }))?,
                Err(e) => return Err(AppError::reject(format!("connect {addr}: {e}"))),
            }
        }
        "file" => {
            let path = params::get("path").unwrap_or_else(|| "/etc/passwd".to_owned());
            match std::fs::read_to_string(&path) {
                Ok(text) => out.emit(&serde_json::json!({ "read": path, "bytes": text.len() }))?,
                Err(e) => return Err(AppError::reject(format!("read {path}: {e}"))),
            }
        }
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            if vars.is_empty() {
                return Err(AppError::reject("the environment is empty"));
            }
            out.emit(&serde_json::json!({ "env": vars }))?;
        }
        other => return Err(AppError::reject(format!("unknown target {other:?}"))),
    }
    Ok(Quality::default())
}
