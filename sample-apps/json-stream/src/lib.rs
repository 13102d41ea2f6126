//! Sample stream app: a JSON sensor reading becomes one document per metric.
//!
//! Input: `{"device": "d-1", "ts": "2026-11-21T10:00:00Z", "site": "hel", "readings":
//! {"temp": 21.5, "hum": 40}}`. Output: `{device, site, ts, day, metric, value, unit}` per
//! reading. A message that is not JSON, lacks a device or timestamp, or carries a non-numeric
//! reading is rejected (dead-lettered) with the reason. Parameters `unit.<metric>` override
//! the built-in units.

use mysimbdp_sdk::{AppError, Message, Output, params, stream_app};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Reading {
    device: String,
    ts: String,
    #[serde(default)]
    site: Option<String>,
    readings: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Metric<'a> {
    device: &'a str,
    site: Option<&'a str>,
    ts: &'a str,
    day: &'a str,
    metric: &'a str,
    value: f64,
    unit: String,
}

#[stream_app]
fn process(message: &Message, out: &mut Output) -> Result<(), AppError> {
    let reading: Reading = message.json()?;
    if reading.device.trim().is_empty() {
        return Err(AppError::reject("device is empty"));
    }
    let day = reading
        .ts
        .get(..10)
        .filter(|d| {
            d.as_bytes()
                .iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 4 | 7) == (*c == b'-'))
        })
        .ok_or_else(|| {
            AppError::reject(format!("ts {:?} is not an ISO 8601 timestamp", reading.ts))
        })?;
    if reading.readings.is_empty() {
        return Err(AppError::reject("readings is empty"));
    }
    for (metric, value) in &reading.readings {
        let value = value.as_f64().ok_or_else(|| {
            AppError::reject(format!("reading {metric:?} is not a number: {value}"))
        })?;
        out.emit(&Metric {
            device: &reading.device,
            site: reading.site.as_deref(),
            ts: &reading.ts,
            day,
            metric,
            value,
            unit: unit_of(metric),
        })?;
    }
    Ok(())
}

fn unit_of(metric: &str) -> String {
    params::get(&format!("unit.{metric}")).unwrap_or_else(|| {
        match metric {
            "temp" => "C",
            "hum" => "%",
            "pressure" => "hPa",
            "co2" => "ppm",
            _ => "",
        }
        .to_owned()
    })
}
