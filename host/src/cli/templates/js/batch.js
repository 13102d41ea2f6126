// {{name}}: a mysimbdp batch app. Each CSV record becomes one document keyed by the header;
// a record with a different number of fields is counted as bad.

import { Quality, params, reject } from './mysimbdp/index.js';
import { batchApp, CsvError } from './mysimbdp/batch.js';

export const batchIngest = batchApp((input, out) => {
  const reader = input.csv(params.get('delimiter', ','));
  const header = reader.headers().map((name) => name.trim());
  if (header.length === 0) throw reject('the file has no header');
  const quality = new Quality();
  for (const row of reader) {
    quality.record();
    if (row instanceof CsvError) {
      quality.bad('not-utf8', row.message);
    } else if (row.length !== header.length) {
      quality.bad('wrong-field-count', row.join(','));
    } else {
      const document = {};
      header.forEach((name, i) => (document[name] = row[i]));
      out.emit(document);
    }
  }
  return quality;
});
