"""The app's transform, following sample-apps/json-stream/src/transform.rs rule for rule:
serde's rules for the `Reading` struct, Rust's trimming, and the byte-wise date check."""

import math

_FIELDS = ("device", "ts", "site", "readings")
# Rust's `str::trim`: Unicode White_Space (not Python's `str.strip` set).
_WS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def reading_of(value):
    """The reading in a message parsed with ``object_pairs_hook=list`` (objects arrive as
    lists of pairs, so duplicate fields are seen), as a dict; ValueError as serde would
    refuse it."""
    if isinstance(value, list) and not (value and isinstance(value[0], tuple)):
        # serde also reads a struct from a JSON array of its fields, in order.
        if len(value) != 4:
            raise ValueError(f"invalid length {len(value)}, expected struct Reading with 4 elements")
        pairs = list(zip(_FIELDS, value))
    elif isinstance(value, list):
        pairs = value
    else:
        raise ValueError("invalid type: expected struct Reading")
    fields = {}
    for key, item in pairs:
        if key in _FIELDS:
            if key in fields:
                raise ValueError(f"duplicate field `{key}`")
            fields[key] = item
    for key in ("device", "ts", "readings"):
        if key not in fields:
            raise ValueError(f"missing field `{key}`")
    device, ts, site, readings = (fields["device"], fields["ts"], fields.get("site"),
                                  fields["readings"])
    if type(device) is not str or type(ts) is not str:
        raise ValueError("invalid type: expected a string")
    if site is not None and type(site) is not str:
        raise ValueError("invalid type: expected a string")
    # An empty object arrives as [] from object_pairs_hook; anything else must be pairs.
    if type(readings) is not list or (readings and type(readings[0]) is not tuple):
        raise ValueError("invalid type: expected a map")
    return {"device": device, "ts": ts, "site": site, "readings": dict(readings)}


def _day_of(ts):
    # Rust: the first 10 *bytes*, which must end on a character boundary, with `-` exactly
    # at bytes 4 and 7.
    if ts[:10].isascii():
        day = ts[:10]
        if len(day) < 10:
            return None
        raw = day.encode()
    else:
        raw_all = ts.encode("utf-8")
        if len(raw_all) < 10 or (len(raw_all) > 10 and raw_all[10] & 0xC0 == 0x80):
            return None
        raw = raw_all[:10]
        day = raw.decode("utf-8")
    for i, byte in enumerate(raw):
        if (i == 4 or i == 7) != (byte == 0x2D):
            return None
    return day


def _as_f64(value):
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise ValueError("number out of range") from None
    return None


def metrics(reading, unit_of):
    """The reading's documents (one per metric, in name order), or ValueError."""
    device = reading["device"]
    if not device.strip(_WS):
        raise ValueError("device is empty")
    ts = reading["ts"]
    try:
        day = _day_of(ts)
    except UnicodeEncodeError:
        day = None
    if day is None:
        raise ValueError(f"ts {ts!r} is not an ISO 8601 timestamp")
    readings = reading["readings"]
    if not readings:
        raise ValueError("readings is empty")
    site = reading["site"]
    documents = []
    for metric in sorted(readings):
        value = _as_f64(readings[metric])
        if value is None:
            raise ValueError(f"reading {metric!r} is not a number: {readings[metric]!r}")
        documents.append({
            "device": device,
            "site": site,
            "ts": ts,
            "day": day,
            "metric": metric,
            "value": value,
            "unit": unit_of(metric),
        })
    return documents
