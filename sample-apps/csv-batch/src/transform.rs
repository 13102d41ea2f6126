//! The wrangling step of the CSV sample app, free of the SDK so that the sandbox benchmark
//! can compile the very same code natively as its baseline.

use serde::Serialize;
use std::fmt;

/// The columns an orders file must have, in any order.
pub const REQUIRED_COLUMNS: [&str; 6] = [
    "order_id",
    "customer_id",
    "product",
    "quantity",
    "unit_price",
    "ordered_at",
];

/// Where each required column sits in this file.
pub struct Columns([usize; 6]);

impl Columns {
    /// Finds the required columns in the header, or says which one is missing.
    pub fn from_header(header: &csv::StringRecord) -> Result<Self, String> {
        let mut positions = [0; 6];
        for (slot, name) in positions.iter_mut().zip(REQUIRED_COLUMNS) {
            *slot = header
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| format!("header has no column {name:?} (found {header:?})"))?;
        }
        Ok(Self(positions))
    }
}

/// One order as stored: typed columns plus the derived `total` and `order_day`.
#[derive(Debug, Serialize)]
pub struct Order<'a> {
    pub order_id: u64,
    pub customer_id: &'a str,
    pub product: &'a str,
    pub quantity: u32,
    pub unit_price: f64,
    pub total: f64,
    pub currency: &'a str,
    pub ordered_at: &'a str,
    pub order_day: &'a str,
}

/// Why a row was skipped; each variant is one quality rule.
#[derive(Debug, PartialEq)]
pub enum BadRow {
    MissingField(&'static str),
    NotAnInteger(&'static str),
    BadPrice,
    BadTimestamp,
}

impl BadRow {
    /// The quality rule this row broke.
    pub fn rule(&self) -> &'static str {
        match self {
            BadRow::MissingField(_) => "missing-field",
            BadRow::NotAnInteger(_) => "not-an-integer",
            BadRow::BadPrice => "bad-price",
            BadRow::BadTimestamp => "bad-timestamp",
        }
    }
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRow::MissingField(column) => write!(f, "{column} is empty or missing"),
            BadRow::NotAnInteger(column) => write!(f, "{column} is not a non-negative integer"),
            BadRow::BadPrice => f.write_str("unit_price is not a non-negative number"),
            BadRow::BadTimestamp => f.write_str("ordered_at is not YYYY-MM-DDTHH:MM:SS"),
        }
    }
}

/// Turns one CSV row into an order, or says which rule it broke.
pub fn transform<'a>(
    columns: &Columns,
    row: &'a csv::StringRecord,
    currency: &'a str,
) -> Result<Order<'a>, BadRow> {
    let field = |i: usize| -> Result<&'a str, BadRow> {
        row.get(columns.0[i])
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(BadRow::MissingField(REQUIRED_COLUMNS[i]))
    };
    let order_id = field(0)?
        .parse()
        .map_err(|_| BadRow::NotAnInteger("order_id"))?;
    let customer_id = field(1)?;
    let product = field(2)?;
    let quantity: u32 = field(3)?
        .parse()
        .map_err(|_| BadRow::NotAnInteger("quantity"))?;
    let unit_price: f64 = field(4)?.parse().map_err(|_| BadRow::BadPrice)?;
    if !unit_price.is_finite() || unit_price < 0.0 {
        return Err(BadRow::BadPrice);
    }
    let ordered_at = field(5)?;
    let order_day = day_of(ordered_at).ok_or(BadRow::BadTimestamp)?;
    Ok(Order {
        order_id,
        customer_id,
        product,
        quantity,
        unit_price,
        total: (f64::from(quantity) * unit_price * 100.0).round() / 100.0,
        currency,
        ordered_at,
        order_day,
    })
}

/// The `YYYY-MM-DD` prefix of a `YYYY-MM-DDTHH:MM:SS…` timestamp, if it is one.
fn day_of(timestamp: &str) -> Option<&str> {
    let b = timestamp.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let number = |r: std::ops::Range<usize>| timestamp.get(r)?.parse::<u32>().ok();
    let shaped = b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':'
        && digits(11..13)
        && digits(14..16)
        && digits(17..19);
    let month = number(5..7)?;
    let day = number(8..10)?;
    (shaped && (1..=12).contains(&month) && (1..=31).contains(&day)).then(|| &timestamp[..10])
}
