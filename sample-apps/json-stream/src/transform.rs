//! The app's transform, free of the SDK so it also compiles natively (the stream benchmark
//! runs this very code as its native baseline): a reading becomes one metric per value.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One sensor reading as published.
#[derive(Deserialize)]
pub struct Reading {
    /// The device.
    pub device: String,
    /// ISO 8601 timestamp.
    pub ts: String,
    /// Where the device is.
    #[serde(default)]
    pub site: Option<String>,
    /// Metric name → value.
    pub readings: BTreeMap<String, serde_json::Value>,
}

/// One document: one metric of one reading.
#[derive(Serialize)]
pub struct Metric<'a> {
    /// The device.
    pub device: &'a str,
    /// Where it is.
    pub site: Option<&'a str>,
    /// When.
    pub ts: &'a str,
    /// The day of `ts`.
    pub day: &'a str,
    /// The metric's name.
    pub metric: &'a str,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
}

/// The reading's metrics, or why it is rejected. `unit_of` names each metric's unit.
pub fn metrics<'a>(
    reading: &'a Reading,
    unit_of: impl Fn(&str) -> String,
) -> Result<Vec<Metric<'a>>, String> {
    if reading.device.trim().is_empty() {
        return Err("device is empty".to_owned());
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
        .ok_or_else(|| format!("ts {:?} is not an ISO 8601 timestamp", reading.ts))?;
    if reading.readings.is_empty() {
        return Err("readings is empty".to_owned());
    }
    reading
        .readings
        .iter()
        .map(|(metric, value)| {
            let value = value
                .as_f64()
                .ok_or_else(|| format!("reading {metric:?} is not a number: {value}"))?;
            Ok(Metric {
                device: &reading.device,
                site: reading.site.as_deref(),
                ts: &reading.ts,
                day,
                metric,
                value,
                unit: unit_of(metric),
            })
        })
        .collect()
}

/// The built-in unit of a metric.
pub fn default_unit(metric: &str) -> &'static str {
    match metric {
        "temp" => "C",
        "hum" => "%",
        "pressure" => "hPa",
        "co2" => "ppm",
        _ => "",
    }
}
