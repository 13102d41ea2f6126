// Sample stream app: a JSON sensor reading becomes one document per metric.
//
// The JavaScript port of sample-apps/json-stream, written to produce byte-identical
// documents. Input: `{"device": "d-1", "ts": "2026-11-21T10:00:00Z", "site": "hel",
// "readings": {"temp": 21.5, "hum": 40}}`. Output: `{device, site, ts, day, metric, value,
// unit}` per reading, metrics in name order. A message that is not JSON, lacks a device or
// timestamp, or carries a non-numeric reading is rejected (dead-lettered) with the reason.
// Parameters `unit.<metric>` override the built-in units.

import { params, reject } from './mysimbdp/index.js';
import { streamApp } from './mysimbdp/stream.js';
import { metrics, readingOf } from './transform.js';

const DEFAULT_UNITS = { temp: 'C', hum: '%', pressure: 'hPa', co2: 'ppm' };
// Cached per instance: every batch gets a fresh instance, so parameters cannot change.
const units = new Map();

function unitOf(metric) {
  let unit = units.get(metric);
  if (unit === undefined) {
    unit = params.get(`unit.${metric}`);
    if (unit === undefined) unit = Object.hasOwn(DEFAULT_UNITS, metric) ? DEFAULT_UNITS[metric] : '';
    units.set(metric, unit);
  }
  return unit;
}

export const streamIngest = streamApp((message, out) => {
  let documents;
  try {
    documents = metrics(readingOf(message.json()), unitOf);
  } catch (error) {
    if (error instanceof RangeError) throw reject(error.message);
    throw error;
  }
  for (const document of documents) out.emit(document);
});
