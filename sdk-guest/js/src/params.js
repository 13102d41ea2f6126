// The parameters the tenant configured for this app. Fetched once per instance, on first
// use and never at module load: the component is pre-initialised at build time, when there
// is no host to ask. Every job or batch gets a fresh instance, so values cannot change.

import { params as host } from './host.js';
import { reject } from './errors.js';

let cache;

function cached() {
  if (cache === undefined) cache = new Map(host.all());
  return cache;
}

/** The value of one parameter, or `fallback` (default undefined) when it is not set. */
export function get(name, fallback = undefined) {
  const value = cached().get(name);
  return value === undefined ? fallback : value;
}

/** Every parameter as [name, value] pairs, sorted by name. */
export function all() {
  return [...cached().entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** A parameter parsed with `parse(text)`, or `fallback` when it is not set; a value `parse`
 * refuses (by throwing) rejects the input naming the parameter. */
export function parseOr(name, fallback, parse) {
  const raw = cached().get(name);
  if (raw === undefined) return fallback;
  try {
    return parse(raw);
  } catch (error) {
    throw reject(`parameter ${name}=${JSON.stringify(raw)}: ${error && error.message ? error.message : error}`);
  }
}
