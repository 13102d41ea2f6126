// Batch apps: the staged file in chunks (Input), its lines and CSV records, and the export.
//
//   export const batchIngest = batchApp((input, out) => { ...; return quality; });
//
// The function returns a Quality (or nothing) and throws reject(...)/retry(...) for input
// it cannot handle; any other exception traps, like a panic in a Rust app.

import { emit, emitNdjson } from './host-batch.js';
import { reject } from './errors.js';
import { Output, ndjson, records } from './output.js';
import { Quality } from './quality.js';
import { ChunkDecoder, INVALID } from './utf8.js';
import { CsvReader } from './csv.js';

export { CsvError, CsvReader } from './csv.js';

/** How much to ask the host for per call: large enough that host calls vanish next to
 * parsing, small enough to stay far below a 64 MiB memory cap. */
export const CHUNK_BYTES = 256 * 1024;

/** Rust's `BufRead::lines` error for a line that is not UTF-8, as the Rust SDK reports it. */
const NOT_UTF8 = 'reading input: stream did not contain valid UTF-8';

/** The file being ingested, read in chunks from the host; never whole in memory. */
export class Input {
  constructor(source) {
    this.source = source;
    this.done = false;
  }

  /** The file's name as the tenant uploaded it. */
  name() {
    return this.source.name();
  }

  /** The file's size in bytes (a BigInt: WIT u64). */
  size() {
    return this.source.size();
  }

  /** The content type given at upload, if any (undefined otherwise). */
  contentType() {
    return this.source.contentType();
  }

  /** The next chunk of bytes (a Uint8Array), or null at the end of the file. */
  read() {
    if (this.done) return null;
    const chunk = this.source.read(CHUNK_BYTES);
    if (chunk.length === 0) {
      this.done = true;
      return null;
    }
    return chunk;
  }

  /** A function returning the file's text piece by piece (`{ text, dirty }`, null at end). */
  textPieces() {
    const decoder = new ChunkDecoder();
    let finished = false;
    return () => {
      if (finished) return null;
      const chunk = this.read();
      if (chunk === null) {
        finished = true;
        const rest = decoder.decode(new Uint8Array(0), true);
        return rest.text.length > 0 ? rest : null;
      }
      return decoder.decode(chunk, false);
    };
  }

  /** The file's lines without their endings (`\n`, or `\r\n`), split as Rust's `lines()`
   * splits them. A line that is not UTF-8 throws reject(...) when reached (the Rust SDK's
   * `?`); iteration may go on after catching it. */
  *lines() {
    const pieces = this.textPieces();
    let rest = '';
    let dirty = false;
    for (;;) {
      const piece = pieces();
      if (piece === null) break;
      if (piece.dirty) dirty = true;
      const text = rest + piece.text;
      let start = 0;
      for (;;) {
        const nl = text.indexOf('\n', start);
        if (nl === -1) break;
        const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
        const line = text.slice(start, end);
        start = nl + 1;
        if (dirty && INVALID.test(line)) throw reject(NOT_UTF8);
        yield line;
      }
      rest = text.slice(start);
    }
    if (rest.length > 0) {
      if (dirty && INVALID.test(rest)) throw reject(NOT_UTF8);
      yield rest;
    }
  }

  /** A CSV reader over the file (the first record is the header); see csv.js. */
  csv(delimiter = ',') {
    return new CsvReader(this.textPieces(), delimiter);
  }
}

function sink(ids, jsons, linesOk) {
  if (emitNdjson !== undefined && linesOk) emitNdjson(ndjson(jsons));
  else emit(records(ids, jsons));
}

/** The `batch-ingest` export for an app function `(input, out) => Quality | undefined`. */
export function batchApp(app) {
  return {
    ingest(source) {
      const out = new Output(sink);
      // An AppError thrown here carries its payload, which componentize-js returns as the
      // `err` case; as in the Rust SDK, documents not yet flushed are dropped then.
      const quality = app(new Input(source), out);
      out.flush();
      return (quality || new Quality()).toWit();
    },
  };
}
