//! The parameters the tenant configured for this app.

use crate::__private::bindings::mysimbdp::ingest::params as host;
use crate::AppError;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;
use std::sync::OnceLock;

/// Fetched once per instance: the host gives every job or batch a fresh instance, so the
/// parameters cannot change underneath, and an app reading them per record costs no host call.
static PARAMS: OnceLock<BTreeMap<String, String>> = OnceLock::new();

fn cached() -> &'static BTreeMap<String, String> {
    PARAMS.get_or_init(|| host::all().into_iter().collect())
}

/// The value of one parameter, if set.
pub fn get(name: &str) -> Option<String> {
    cached().get(name).cloned()
}

/// Every parameter as (name, value) pairs, sorted by name.
pub fn all() -> Vec<(String, String)> {
    cached()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A parameter parsed as `T`, or `default` when it is not set. A value that does not parse
/// rejects the input with a reason naming the parameter.
pub fn parse_or<T>(name: &str, default: T) -> Result<T, AppError>
where
    T: FromStr,
    T::Err: Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|e| AppError::reject(format!("parameter {name}={raw:?}: {e}"))),
    }
}
