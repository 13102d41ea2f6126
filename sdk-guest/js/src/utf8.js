// Decoding the staged file's chunks to text while keeping track of invalid UTF-8.
//
// Invalid bytes become lone surrogates U+DC80..U+DCFF (which valid UTF-8 never yields), so
// the text can still be split into lines and records, and a line or record holding one is
// reported as not UTF-8 exactly where the Rust SDK reports it. A sequence split between two
// chunks is carried over to the next chunk.

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Matches a character that stands for an invalid byte. */
export const INVALID = /[\udc80-\udcff]/;

export class ChunkDecoder {
  constructor() {
    this.carry = null;
  }

  /** `{ text, dirty }` for the next chunk (`final` at end of input); `dirty` says the text
   * holds invalid-byte marks. */
  decode(chunk, final) {
    let bytes = chunk;
    if (this.carry !== null) {
      bytes = new Uint8Array(this.carry.length + chunk.length);
      bytes.set(this.carry, 0);
      bytes.set(chunk, this.carry.length);
      this.carry = null;
    }
    let end = bytes.length;
    if (!final) {
      end = completeEnd(bytes);
      if (end < bytes.length) this.carry = bytes.slice(end);
    }
    const part = end === bytes.length ? bytes : bytes.subarray(0, end);
    try {
      return { text: fatal.decode(part), dirty: false };
    } catch {
      return { text: decodeMarked(part), dirty: true };
    }
  }
}

/** Where an incomplete sequence at the end of `bytes` starts (bytes.length if none). */
function completeEnd(bytes) {
  const n = bytes.length;
  for (let i = n - 1; i >= 0 && i >= n - 3; i--) {
    const b = bytes[i];
    if ((b & 0xc0) === 0x80) continue;
    if (b < 0xc0) return n;
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
    return i + need > n ? i : n;
  }
  return n;
}

/** The length of the valid sequence starting at `i` (a non-ASCII byte), or 0. */
function sequenceLength(bytes, i) {
  const n = bytes.length;
  const b = bytes[i];
  const cont = (j, lo = 0x80, hi = 0xbf) => j < n && bytes[j] >= lo && bytes[j] <= hi;
  if (b >= 0xc2 && b <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    const lo = b === 0xe0 ? 0xa0 : 0x80;
    const hi = b === 0xed ? 0x9f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const lo = b === 0xf0 ? 0x90 : 0x80;
    const hi = b === 0xf4 ? 0x8f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/** Decodes `bytes`, each invalid byte becoming U+DC00 + byte. Slow: only for chunks that
 * failed the native decoder. */
function decodeMarked(bytes) {
  let text = '';
  let run = 0;
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] < 0x80) {
      i++;
      continue;
    }
    const length = sequenceLength(bytes, i);
    if (length) {
      i += length;
      continue;
    }
    text += fatal.decode(bytes.subarray(run, i)) + String.fromCharCode(0xdc00 + bytes[i]);
    i++;
    run = i;
  }
  return text + fatal.decode(bytes.subarray(run));
}
