// The app's transform, following sample-apps/json-stream/src/transform.rs rule for rule:
// serde's rules for the `Reading` struct, Rust's trimming, and the byte-wise date check.
// Known gap: JSON.parse keeps the last of duplicate keys where serde refuses a duplicate
// `device`, `ts`, `site` or `readings` (the Python port refuses them as serde does).

import { compareCodePoints } from './mysimbdp/index.js';

const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const ONLY_WS = new RegExp(`^[${WS}]*$`);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The reading in a parsed message, as serde would read the Rust struct, or a RangeError. */
export function readingOf(value) {
  let reading = value;
  if (Array.isArray(value)) {
    // serde also reads a struct from a JSON array of its fields, in order.
    if (value.length !== 4) throw new RangeError(`invalid length ${value.length}, expected struct Reading with 4 elements`);
    reading = { device: value[0], ts: value[1], site: value[2], readings: value[3] };
  } else if (value === null || typeof value !== 'object') {
    throw new RangeError('invalid type: expected struct Reading');
  }
  for (const key of ['device', 'ts', 'readings']) {
    if (!Object.hasOwn(reading, key)) throw new RangeError(`missing field \`${key}\``);
  }
  const { device, ts, readings } = reading;
  const site = Object.hasOwn(reading, 'site') ? reading.site : null;
  if (typeof device !== 'string' || typeof ts !== 'string') throw new RangeError('invalid type: expected a string');
  if (site !== null && typeof site !== 'string') throw new RangeError('invalid type: expected a string');
  if (readings === null || typeof readings !== 'object' || Array.isArray(readings)) {
    throw new RangeError('invalid type: expected a map');
  }
  return { device, ts, site, readings };
}

/** Rust: the first 10 *bytes*, ending on a character boundary, with `-` exactly at 4 and 7. */
function dayOf(ts) {
  let day;
  let ascii = ts.length >= 10;
  for (let i = 0; ascii && i < 10; i++) if (ts.charCodeAt(i) > 0x7f) ascii = false;
  if (ascii) {
    day = ts.slice(0, 10);
  } else {
    const bytes = encoder.encode(ts);
    if (bytes.length < 10 || (bytes.length > 10 && (bytes[10] & 0xc0) === 0x80)) return undefined;
    day = decoder.decode(bytes.subarray(0, 10));
    const raw = bytes.subarray(0, 10);
    for (let i = 0; i < 10; i++) if ((i === 4 || i === 7) !== (raw[i] === 0x2d)) return undefined;
    return day;
  }
  for (let i = 0; i < 10; i++) if ((i === 4 || i === 7) !== (day.charCodeAt(i) === 0x2d)) return undefined;
  return day;
}

/** The reading's documents, one per metric in name order, or a RangeError. */
export function metrics(reading, unitOf) {
  const { device, ts, site, readings } = reading;
  if (ONLY_WS.test(device)) throw new RangeError('device is empty');
  const day = dayOf(ts);
  if (day === undefined) throw new RangeError(`ts ${JSON.stringify(ts)} is not an ISO 8601 timestamp`);
  const names = Object.keys(readings);
  if (names.length === 0) throw new RangeError('readings is empty');
  names.sort(compareCodePoints);
  const documents = [];
  for (const metric of names) {
    const value = readings[metric];
    if (typeof value !== 'number') {
      throw new RangeError(`reading ${JSON.stringify(metric)} is not a number: ${JSON.stringify(value)}`);
    }
    documents.push({ device, site, ts, day, metric, value, unit: unitOf(metric) });
  }
  return documents;
}
