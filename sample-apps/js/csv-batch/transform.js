// The wrangling step of the CSV sample app, following sample-apps/csv-batch/src/transform.rs
// rule for rule, including Rust's number grammar and its Unicode White_Space trimming.

export const REQUIRED_COLUMNS = ['order_id', 'customer_id', 'product', 'quantity', 'unit_price', 'ordered_at'];

// Rust's `str::trim` strips Unicode White_Space; JS's `trim` also strips U+FEFF and keeps U+0085.
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM = new RegExp(`^[${WS}]+|[${WS}]+$`, 'g');
const NEEDS_TRIM = new RegExp(`^[${WS}]|[${WS}]$`);
// Rust's `u64`/`u32` FromStr: an optional `+`, then ASCII digits only.
const UINT = /^\+?[0-9]+$/;
// Rust's `f64` FromStr: decimal with optional exponent, or inf/infinity/nan in any case.
const FLOAT = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$/i;
const U64_MAX = 18446744073709551615n;

export function rustTrim(text) {
  return NEEDS_TRIM.test(text) ? text.replace(TRIM, '') : text;
}

export class BadRow extends Error {
  constructor(rule, message) {
    super(message);
    this.rule = rule;
  }
}

/** Where each required column sits, or a RangeError naming the missing one. */
export function columnsFromHeader(header) {
  const trimmed = header.map(rustTrim);
  return REQUIRED_COLUMNS.map((name) => {
    const at = trimmed.indexOf(name);
    if (at === -1) {
      const found = `StringRecord([${header.map((h) => JSON.stringify(h)).join(', ')}])`;
      throw new RangeError(`header has no column ${JSON.stringify(name)} (found ${found})`);
    }
    return at;
  });
}

function field(row, columns, i) {
  const at = columns[i];
  const value = at < row.length ? rustTrim(row[at]) : '';
  if (value === '') throw new BadRow('missing-field', `${REQUIRED_COLUMNS[i]} is empty or missing`);
  return value;
}

/** Rust's f64::round: half away from zero. */
function round(x) {
  const whole = Math.trunc(x);
  const fraction = x - whole;
  if (fraction >= 0.5) return whole + 1;
  if (fraction <= -0.5) return whole - 1;
  return whole;
}

function digitsAt(t, from, to) {
  for (let i = from; i < to; i++) {
    const c = t.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** The `YYYY-MM-DD` prefix of a `YYYY-MM-DDTHH:MM:SS...` timestamp, if it is one. Rust checks
 * the first 19 bytes; any non-ASCII among them fails one of its checks, so these checks may
 * run on UTF-16 units. Month and day parse as Rust's u32, which takes a leading `+`. */
function dayOf(t) {
  if (t.length < 19) return undefined;
  for (let i = 0; i < 19; i++) if (t.charCodeAt(i) > 0x7f) return undefined;
  const c10 = t[10];
  if (!(digitsAt(t, 0, 4) && t[4] === '-' && t[7] === '-' && (c10 === 'T' || c10 === ' ') && t[13] === ':' &&
        t[16] === ':' && digitsAt(t, 11, 13) && digitsAt(t, 14, 16) && digitsAt(t, 17, 19))) {
    return undefined;
  }
  const month = t.slice(5, 7);
  const day = t.slice(8, 10);
  if (!UINT.test(month) || !UINT.test(day)) return undefined;
  const m = Number(month);
  const d = Number(day);
  if (m < 1 || m > 12 || d < 1 || d > 31) return undefined;
  return t.slice(0, 10);
}

/** One CSV row as an order document, or a thrown BadRow. Integers are BigInt so they are
 * written as integers; the prices are f64 Numbers, as in Rust. */
export function transform(columns, row, currency) {
  const idText = field(row, columns, 0);
  if (!UINT.test(idText)) throw new BadRow('not-an-integer', 'order_id is not a non-negative integer');
  const orderId = BigInt(idText.replace('+', ''));
  if (orderId > U64_MAX) throw new BadRow('not-an-integer', 'order_id is not a non-negative integer');
  const customerId = field(row, columns, 1);
  const product = field(row, columns, 2);
  const quantityText = field(row, columns, 3);
  if (!UINT.test(quantityText)) throw new BadRow('not-an-integer', 'quantity is not a non-negative integer');
  const quantityBig = BigInt(quantityText.replace('+', ''));
  if (quantityBig > 4294967295n) throw new BadRow('not-an-integer', 'quantity is not a non-negative integer');
  const quantity = Number(quantityBig);
  const priceText = field(row, columns, 4);
  if (!FLOAT.test(priceText)) throw new BadRow('bad-price', 'unit_price is not a non-negative number');
  const lower = priceText.toLowerCase();
  const unitPrice = lower.endsWith('inf') || lower.endsWith('infinity') ? Infinity : lower.endsWith('nan') ? NaN : Number(priceText);
  if (!Number.isFinite(unitPrice) || unitPrice < 0) throw new BadRow('bad-price', 'unit_price is not a non-negative number');
  const orderedAt = field(row, columns, 5);
  const orderDay = dayOf(orderedAt);
  if (orderDay === undefined) throw new BadRow('bad-timestamp', 'ordered_at is not YYYY-MM-DDTHH:MM:SS');
  return {
    order_id: orderId,
    customer_id: customerId,
    product,
    quantity: quantityBig,
    unit_price: unitPrice,
    total: round(quantity * unitPrice * 100) / 100,
    currency,
    ordered_at: orderedAt,
    order_day: orderDay,
  };
}
