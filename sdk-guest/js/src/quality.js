// Quality: counts of records read and rules broken, stored beside the data.

/** Examples are shortened to this many characters so a bad multi-megabyte row stays small. */
export const EXAMPLE_CHARS = 200;

export class Quality {
  constructor() {
    this.recordsIn = 0;
    this.recordsBad = 0;
    this.violations = new Map(); // rule -> [count, first example]
  }

  /** Count one record read. */
  record() {
    this.recordsIn++;
  }

  /** Count one record as bad because it broke `rule`; the first example of each rule is
   * kept, shortened to EXAMPLE_CHARS characters (code points, as the Rust SDK counts). */
  bad(rule, example = '') {
    this.recordsBad++;
    const entry = this.violations.get(rule);
    if (entry === undefined) {
      const text = String(example);
      const short = text.length <= EXAMPLE_CHARS ? text : Array.from(text).slice(0, EXAMPLE_CHARS).join('');
      this.violations.set(rule, [1, short]);
    } else {
      entry[0]++;
    }
  }

  /** The WIT value (u64 counts are BigInt there), rules sorted as the Rust SDK sorts them. */
  toWit() {
    const rules = [...this.violations.keys()].sort(compareCodePoints);
    return {
      recordsIn: BigInt(this.recordsIn),
      recordsBad: BigInt(this.recordsBad),
      violations: rules.map((rule) => {
        const [count, example] = this.violations.get(rule);
        return { rule, count: BigInt(count), example };
      }),
    };
  }
}

/** Orders strings by code point (= UTF-8 byte order, Rust's `str` order); the default sort
 * compares UTF-16 units, which puts U+E000..U+FFFF after astral characters. */
export function compareCodePoints(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i);
    const y = b.codePointAt(i);
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}
