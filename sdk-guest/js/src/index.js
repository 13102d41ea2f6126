// The JavaScript SDK for mysimbdp ingestion apps (components built with componentize-js).
//
// A batch app (app.js; `mysimbdp/` is this SDK, staged beside the app by build.mjs):
//
//   import { Quality } from './mysimbdp/index.js';
//   import { batchApp } from './mysimbdp/batch.js';
//
//   export const batchIngest = batchApp((input, out) => {
//     const quality = new Quality();
//     for (const line of input.lines()) {
//       quality.record();
//       out.emit({ line });
//     }
//     return quality;
//   });
//
// A stream app exports `streamIngest = streamApp((message, out) => ...)` from './mysimbdp/stream.js'.
//
// Traps this package hides: nothing calls the host while modules load (the component is
// pre-initialised at build time); errors reach the host only through AppError's `payload`;
// WIT u64 values are BigInt (Input.size(), the quality counts); documents are written as
// serde_json writes them (Numbers are f64, BigInts integers).

export { AppError, reject, retry } from './errors.js';
export { dumps, formatF64 } from './json.js';
export { Output } from './output.js';
export { Quality, compareCodePoints } from './quality.js';
export * as params from './params.js';
export * as log from './log.js';
