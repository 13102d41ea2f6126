//! Sample stream app: a JSON sensor reading becomes one document per metric.
//!
//! Input: `{"device": "d-1", "ts": "2026-11-21T10:00:00Z", "site": "hel", "readings":
//! {"temp": 21.5, "hum": 40}}`. Output: `{device, site, ts, day, metric, value, unit}` per
//! reading. A message that is not JSON, lacks a device or timestamp, or carries a non-numeric
//! reading is rejected (dead-lettered) with the reason. Parameters `unit.<metric>` override
//! the built-in units.

mod transform;

use mysimbdp_sdk::{AppError, Message, Output, params, stream_app};
use transform::{Reading, default_unit, metrics};

#[stream_app]
fn process(message: &Message, out: &mut Output) -> Result<(), AppError> {
    let reading: Reading = message.json()?;
    let metrics = metrics(&reading, unit_of).map_err(AppError::reject)?;
    for metric in &metrics {
        out.emit(metric)?;
    }
    Ok(())
}

fn unit_of(metric: &str) -> String {
    params::get(&format!("unit.{metric}")).unwrap_or_else(|| default_unit(metric).to_owned())
}
