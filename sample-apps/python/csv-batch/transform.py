"""The wrangling step of the CSV sample app, following sample-apps/csv-batch/src/transform.rs
rule for rule, including Rust's number grammar and its Unicode White_Space trimming."""

import math
import re

REQUIRED_COLUMNS = ("order_id", "customer_id", "product", "quantity", "unit_price", "ordered_at")

# Rust's `str::trim`: Unicode White_Space, which differs from Python's `str.strip`
# (that also strips U+001C..U+001F and keeps none that Rust strips).
_WS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Rust's `u64`/`u32` FromStr: an optional `+`, then ASCII digits only.
_UINT = re.compile(r"\+?[0-9]+\Z")
# Rust's `f64` FromStr: decimal with optional exponent, or inf/infinity/nan, any case.
_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
                    re.IGNORECASE)
_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1


class BadRow(Exception):
    """Why a row was skipped; `rule` is the quality rule it broke."""

    def __init__(self, rule, message):
        super().__init__(message)
        self.rule = rule


def columns_from_header(header):
    """Where each required column sits, or ValueError naming the missing one."""
    positions = []
    trimmed = [h.strip(_WS) for h in header]
    for name in REQUIRED_COLUMNS:
        try:
            positions.append(trimmed.index(name))
        except ValueError:
            found = "StringRecord([" + ", ".join(_rust_debug(h) for h in header) + "])"
            raise ValueError(f"header has no column {_rust_debug(name)} (found {found})") from None
    return positions


def _rust_debug(text):
    # Close to Rust's `{:?}` of a str for the usual cases (quotes and backslashes escaped).
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field(row, columns, i):
    position = columns[i]
    value = row[position].strip(_WS) if position < len(row) else ""
    if not value:
        raise BadRow("missing-field", f"{REQUIRED_COLUMNS[i]} is empty or missing")
    return value


def _uint(text, limit, column):
    if _UINT.match(text) is None or int(text) > limit:
        raise BadRow("not-an-integer", f"{column} is not a non-negative integer")
    return int(text)


def _round(value):
    # Rust's f64::round: half away from zero (Python's round() is half to even).
    fraction, whole = math.modf(value)
    if abs(fraction) >= 0.5:
        whole += math.copysign(1.0, value)
    return whole


def _day_of(timestamp):
    # The `YYYY-MM-DD` prefix of a `YYYY-MM-DDTHH:MM:SS...` timestamp, if it is one. Rust
    # checks the first 19 bytes; any non-ASCII among them fails one of its checks, so the
    # checks below may run on code points. Month and day are parsed as Rust's u32, which
    # takes a leading `+` (`2026-+5-01T...` is May).
    if len(timestamp) < 19 or not timestamp[:19].isascii():
        return None
    t = timestamp
    if not (t[0:4].isdigit() and t[4] == "-" and t[7] == "-" and t[10] in "T "
            and t[13] == ":" and t[16] == ":" and t[11:13].isdigit() and t[14:16].isdigit()
            and t[17:19].isdigit()):
        return None
    month, day = t[5:7], t[8:10]
    if _UINT.match(month) is None or _UINT.match(day) is None:
        return None
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return None
    return t[:10]


def transform(columns, row, currency):
    """One CSV row as an order document, or BadRow."""
    order_id = _uint(_field(row, columns, 0), _U64_MAX, "order_id")
    customer_id = _field(row, columns, 1)
    product = _field(row, columns, 2)
    quantity = _uint(_field(row, columns, 3), _U32_MAX, "quantity")
    price_text = _field(row, columns, 4)
    if _FLOAT.match(price_text) is None:
        raise BadRow("bad-price", "unit_price is not a non-negative number")
    unit_price = float(price_text)
    if not math.isfinite(unit_price) or unit_price < 0.0:
        raise BadRow("bad-price", "unit_price is not a non-negative number")
    ordered_at = _field(row, columns, 5)
    order_day = _day_of(ordered_at)
    if order_day is None:
        raise BadRow("bad-timestamp", "ordered_at is not YYYY-MM-DDTHH:MM:SS")
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "product": product,
        "quantity": quantity,
        "unit_price": unit_price,
        "total": _round(float(quantity) * unit_price * 100.0) / 100.0,
        "currency": currency,
        "ordered_at": ordered_at,
        "order_day": order_day,
    }
