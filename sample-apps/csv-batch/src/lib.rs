//! Sample batch app: a CSV file of orders becomes one typed document per order.
//!
//! Parameters: `delimiter` (one ASCII character, default `,`) and `currency` (default `EUR`).
//! A file whose header lacks a required column is rejected; a bad row is skipped and counted
//! in the quality report, never crashing the app.

mod transform;

use mysimbdp_sdk::{AppError, Input, Output, Quality, batch_app, params};
use transform::{Columns, transform};

#[batch_app]
fn ingest(input: &mut Input, out: &mut Output) -> Result<Quality, AppError> {
    let delimiter = params::parse_or("delimiter", ',')?;
    if !delimiter.is_ascii() {
        return Err(AppError::reject(format!(
            "parameter delimiter={delimiter:?} is not ASCII"
        )));
    }
    let currency = params::get("currency").unwrap_or_else(|| "EUR".to_owned());

    let mut reader = input.csv(delimiter as u8);
    let columns = Columns::from_header(reader.headers()?).map_err(AppError::reject)?;
    let mut quality = Quality::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                // Invalid UTF-8 and the like: the reader has moved past the row already.
                quality.record();
                quality.bad("malformed-row", error);
                continue;
            }
        }
        quality.record();
        match transform(&columns, &record, &currency) {
            Ok(order) => out.emit(&order)?,
            Err(bad) => {
                let row: Vec<&str> = record.iter().collect();
                quality.bad(bad.rule(), format_args!("{bad}: {}", row.join(",")));
            }
        }
    }
    Ok(quality)
}
