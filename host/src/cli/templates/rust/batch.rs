//! {{name}}: a mysimbdp batch app. Each CSV record becomes one document keyed by the header;
//! a record with a different number of fields, or not UTF-8, is counted as bad.

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params, serde_json};

#[batch_app]
fn ingest(input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    let delimiter = params::parse_or("delimiter", ',')?;
    let mut reader = input.csv(delimiter as u8);
    let header: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_owned()).collect();
    if header.is_empty() {
        return Err(AppError::reject("the file has no header"));
    }
    let mut quality = Quality::default();
    for row in reader.records() {
        quality.record();
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                quality.bad("not-utf8", error);
                continue;
            }
        };
        if row.len() != header.len() {
            quality.bad("wrong-field-count", row.iter().collect::<Vec<_>>().join(","));
            continue;
        }
        let document: serde_json::Map<String, serde_json::Value> = header
            .iter()
            .zip(row.iter())
            .map(|(name, value)| (name.clone(), value.into()))
            .collect();
        out.emit(&document)?;
    }
    Ok(quality)
}
