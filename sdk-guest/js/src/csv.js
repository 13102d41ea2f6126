// A CSV reader that splits records exactly as the Rust SDK's reader (the `csv` crate, with
// flexible rows) does: a leading UTF-8 BOM dropped, blank lines skipped, `\n`, `\r` and
// `\r\n` ending records, a quote opening a quoted field only at the field's start, `""` a
// literal quote inside one, text after a closing quote kept, and a record holding invalid
// UTF-8 reported as an error in its place.

import { INVALID } from './utf8.js';
import { reject } from './errors.js';

const NEED_MORE = null;

/** A record the reader could not return (its bytes are not UTF-8); the reader has moved
 * past it. Iterating a CsvReader yields one in place of the record. */
export class CsvError {
  constructor(record, field, validUpTo) {
    this.record = record;
    this.field = field;
    this.message =
      `CSV parse error: record ${record} (field: ${field}): invalid utf-8: ` +
      `invalid UTF-8 in field ${field} near byte index ${validUpTo}`;
  }

  toString() {
    return this.message;
  }
}

const encoder = new TextEncoder();

function invalidField(fields) {
  for (let i = 0; i < fields.length; i++) {
    const hit = fields[i].search(INVALID);
    if (hit !== -1) return [i, encoder.encode(fields[i].slice(0, hit)).length];
  }
  return null;
}

export class CsvReader {
  /** `text()` returns the next `{ text, dirty }` piece of the file, or null at its end. */
  constructor(text, delimiter) {
    if (typeof delimiter !== 'string' || delimiter.length !== 1 || delimiter.charCodeAt(0) > 0x7f) {
      throw reject(`CSV delimiter ${JSON.stringify(delimiter)} is not one ASCII character`);
    }
    this.source = text;
    this.delimiter = delimiter;
    this.delimiterCode = delimiter.charCodeAt(0);
    this.stop = new RegExp('[' + delimiter.replace(/[\\\]^-]/g, '\\$&') + '\\r\\n]', 'g');
    this.buf = '';
    this.pos = 0;
    this.eof = false;
    this.dirty = false;
    this.started = false;
    this.header = undefined;
    this.index = 0; // records read so far, the header included
  }

  /** The header record (the first one); a header that is not UTF-8 rejects the file. */
  headers() {
    if (this.header === undefined) {
      const row = this.nextRecord();
      if (row instanceof CsvError) throw reject(`CSV: ${row.message}`);
      this.header = row === null ? [] : row;
    }
    return this.header;
  }

  [Symbol.iterator]() {
    return this;
  }

  next() {
    this.headers();
    const row = this.nextRecord();
    return row === null ? { done: true, value: undefined } : { done: false, value: row };
  }

  fill() {
    const piece = this.source();
    if (piece === null) {
      this.eof = true;
      return false;
    }
    let text = piece.text;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (piece.dirty) this.dirty = true;
    this.buf = this.pos > 0 ? this.buf.slice(this.pos) + text : this.buf + text;
    this.pos = 0;
    return true;
  }

  nextRecord() {
    const fields = this.nextFields();
    if (fields === null) return null;
    const index = this.index++;
    if (this.dirty) {
      const bad = invalidField(fields);
      if (bad !== null) return new CsvError(index, bad[0], bad[1]);
    }
    return fields;
  }

  nextFields() {
    for (;;) {
      const buf = this.buf;
      const n = buf.length;
      let p = this.pos;
      while (p < n) {
        const c = buf.charCodeAt(p);
        if (c !== 10 && c !== 13) break;
        p++;
      }
      this.pos = p;
      if (p >= n) {
        if (this.eof || !this.fill()) return null;
        continue;
      }
      const nl = buf.indexOf('\n', p);
      if (nl === -1 && !this.eof) {
        this.fill();
        continue;
      }
      const end = nl === -1 ? n : nl;
      // The common line: no quotes and no `\r` but the one of a `\r\n` ending.
      const lineEnd = end > p && buf.charCodeAt(end - 1) === 13 ? end - 1 : end;
      const line = buf.slice(p, lineEnd);
      if (line.indexOf('"') === -1 && line.indexOf('\r') === -1) {
        this.pos = nl === -1 ? n : nl + 1;
        return line.split(this.delimiter);
      }
      const fields = this.parse(p);
      if (fields !== NEED_MORE) return fields;
      if (!this.fill()) continue; // at the end of input: parse again, knowing it
    }
  }

  /** The record starting at `i`, or NEED_MORE when the buffer ends inside it. */
  parse(i) {
    const buf = this.buf;
    const n = buf.length;
    const eof = this.eof;
    const stop = this.stop;
    const fields = [];
    for (;;) {
      let value;
      if (i < n && buf.charCodeAt(i) === 34) {
        value = '';
        i++;
        for (;;) {
          const q = buf.indexOf('"', i);
          if (q === -1) {
            if (!eof) return NEED_MORE;
            // A quoted field open at the end of input ends there, with its record.
            fields.push(value + buf.slice(i));
            this.pos = n;
            return fields;
          }
          value += buf.slice(i, q);
          if (q + 1 >= n && !eof) return NEED_MORE;
          if (buf.charCodeAt(q + 1) === 34) {
            value += '"';
            i = q + 2;
            continue;
          }
          i = q + 1;
          break;
        }
      } else {
        value = '';
      }
      // Unquoted text, or text after a closing quote: literal up to a delimiter or line end.
      stop.lastIndex = i;
      const hit = stop.exec(buf);
      const at = hit === null ? n : hit.index;
      if (at === n && !eof) return NEED_MORE;
      fields.push(value + buf.slice(i, at));
      i = at;
      if (i >= n) {
        this.pos = n;
        return fields;
      }
      if (buf.charCodeAt(i) === this.delimiterCode) {
        i++;
        continue;
      }
      this.pos = i + 1; // `\r` or `\n`; a `\n` after a `\r` is skipped as a blank line
      return fields;
    }
  }
}
