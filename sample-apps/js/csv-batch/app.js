// Sample batch app: a CSV file of orders becomes one typed document per order.
//
// The JavaScript port of sample-apps/csv-batch, written to produce byte-identical documents:
// parameters `delimiter` (one ASCII character, default `,`) and `currency` (default `EUR`);
// a file whose header lacks a required column is rejected; a bad row is skipped and counted
// in the quality report. Numbers and whitespace follow Rust's rules (see transform.js).

import { Quality, params, reject } from './mysimbdp/index.js';
import { batchApp, CsvError } from './mysimbdp/batch.js';
import { BadRow, columnsFromHeader, transform } from './transform.js';

export const batchIngest = batchApp((input, out) => {
  const delimiter = params.get('delimiter', ',');
  // Rust's `char` parse: exactly one character (code point).
  const chars = Array.from(delimiter);
  if (chars.length !== 1) {
    throw reject(
      `parameter delimiter=${JSON.stringify(delimiter)}: ` +
        (chars.length ? 'too many characters in string' : 'cannot parse char from empty string'),
    );
  }
  if (delimiter.charCodeAt(0) > 0x7f) {
    throw reject(`parameter delimiter=${JSON.stringify(delimiter)} is not ASCII`);
  }
  const currency = params.get('currency', 'EUR');

  const reader = input.csv(delimiter);
  let columns;
  try {
    columns = columnsFromHeader(reader.headers());
  } catch (error) {
    if (error instanceof RangeError) throw reject(error.message);
    throw error;
  }
  const quality = new Quality();
  for (const row of reader) {
    quality.record();
    if (row instanceof CsvError) {
      quality.bad('malformed-row', row.message);
      continue;
    }
    let order;
    try {
      order = transform(columns, row, currency);
    } catch (error) {
      if (!(error instanceof BadRow)) throw error;
      quality.bad(error.rule, `${error.message}: ${row.join(',')}`);
      continue;
    }
    out.emit(order);
  }
  return quality;
});
