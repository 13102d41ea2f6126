// Output: documents leave the app in batches, never one host call per document.

import { dumps } from './json.js';
import { reject } from './errors.js';
import { HAS_NDJSON } from './host.js';

/** Flush to the host after this many documents ... */
export const BATCH_DOCUMENTS = 2048;
/** ... or this many UTF-16 units of JSON, whichever comes first. */
export const BATCH_CHARS = 2 * 1024 * 1024;

// JSON.stringify writes a lone surrogate as `\udXXX`: such a string has no UTF-8 form, and
// the Rust SDK would have refused it when parsing, so the document is refused here.
const LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/;

const encoder = new TextEncoder();

export class Output {
  /** `sink(ids, jsons, linesOk)` takes full batches (batch apps); none in stream apps. */
  constructor(sink) {
    this.ids = [];
    this.jsons = [];
    this.chars = 0;
    this.sink = sink;
    this.linesOk = true; // no explicit ids and no raw newlines: the batch can go as ndjson
    this.count = 0; // documents taken so far
  }

  /** Emit one document (an object, written as serde_json would); the platform derives its
   * `_id` deterministically, so a replay never duplicates it. */
  emit(document) {
    this.push(undefined, serialize(document));
  }

  /** Emit one document with its own `_id` (a natural key stable across replays). */
  emitWithId(id, document) {
    this.linesOk = false;
    this.push(String(id), serialize(document));
  }

  /** Emit a document that is already JSON object text. */
  emitJson(json) {
    if (json.indexOf('\n') !== -1) this.linesOk = false;
    this.push(undefined, String(json));
  }

  /** Send what is buffered to the host now (batch apps flush on their own). */
  flush() {
    if (this.sink !== undefined && this.jsons.length > 0) {
      this.sink(this.ids, this.jsons, this.linesOk);
      this.ids = [];
      this.jsons = [];
      this.chars = 0;
      this.linesOk = true;
    }
  }

  push(id, json) {
    this.ids.push(id);
    this.jsons.push(json);
    this.chars += json.length;
    this.count++;
    if (this.sink !== undefined && (this.jsons.length >= BATCH_DOCUMENTS || this.chars >= BATCH_CHARS)) {
      this.flush();
    }
  }

  /** The collected documents as the WIT value a stream outcome carries. */
  documents() {
    return toDocuments(this.ids, this.jsons, this.linesOk);
  }
}

function serialize(document) {
  let json;
  try {
    json = dumps(document);
  } catch (error) {
    throw reject(`cannot serialize document: ${error.message}`);
  }
  if (json.indexOf('\\ud') !== -1 && LONE_SURROGATE.test(json)) {
    throw reject('cannot serialize document: a string is not valid Unicode');
  }
  return json;
}

/** One buffer of newline-delimited JSON: encoding it is a single native call, where a list
 * of records makes the generated glue encode every string in interpreted JS. */
export function ndjson(jsons) {
  return encoder.encode(jsons.join('\n'));
}

export function toDocuments(ids, jsons, linesOk) {
  if (HAS_NDJSON) {
    if (linesOk) return { tag: 'ndjson', val: ndjson(jsons) };
    return { tag: 'records', val: records(ids, jsons) };
  }
  return records(ids, jsons);
}

export function records(ids, jsons) {
  const list = new Array(jsons.length);
  for (let i = 0; i < jsons.length; i++) list[i] = { id: ids[i], json: jsons[i] };
  return list;
}
