// JSON text exactly as the Rust SDK (serde_json) writes it, so a JS app's documents are
// byte-identical to a Rust app's. A Number is an f64 and is written as Rust writes one
// (`40.0`, `1e+16`, `1.5e-7`; NaN and infinities as `null`); a BigInt is an integer
// (`40n` -> `40`), which is how an app stores integers such as u64 ids.

/** A Number as serde_json (the `ryu` crate) writes an f64. */
export function formatF64(x) {
  if (x !== x || x === Infinity || x === -Infinity) return 'null';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const abs = x < 0 ? -x : x;
  if (abs < 1e16 && abs >= 1e-5) {
    // JS and ryu agree on plain decimals here, except that ryu marks integers with `.0`.
    const text = String(x);
    return Number.isInteger(x) ? text + '.0' : text;
  }
  // toExponential() gives the shortest round-trip digits, as ryu does: d[.ddd]e±n.
  const exp = x.toExponential();
  const e = exp.indexOf('e');
  let mantissa = exp.slice(0, e);
  let sign = '';
  if (mantissa[0] === '-') {
    sign = '-';
    mantissa = mantissa.slice(1);
  }
  const digits = mantissa.replace('.', '');
  const length = digits.length;
  const kk = Number(exp.slice(e + 1)) + 1; // 10^(kk-1) <= |x| < 10^kk
  const k = kk - length;
  if (k >= 0 && kk <= 16) return sign + digits + '0'.repeat(k) + '.0';
  if (kk > 0 && kk <= 16) return sign + digits.slice(0, kk) + '.' + digits.slice(kk);
  if (kk > -5 && kk <= 0) return sign + '0.' + '0'.repeat(-kk) + digits;
  // serde_json marks a positive exponent with `+` (`1e+16`), a negative one with `-`.
  const exponent = (kk > 0 ? 'e+' : 'e') + (kk - 1);
  if (length === 1) return sign + digits + exponent;
  return sign + digits[0] + '.' + digits.slice(1) + exponent;
}

function encode(value) {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return formatF64(value);
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let text = '[';
        for (let i = 0; i < value.length; i++) {
          if (i) text += ',';
          text += value[i] === undefined ? 'null' : encode(value[i]);
        }
        return text + ']';
      }
      if (typeof value.toJSON === 'function') return encode(value.toJSON());
      let text = '{';
      let first = true;
      for (const key in value) {
        if (!Object.prototype.hasOwnProperty.call(value, key)) continue;
        const item = value[key];
        // As JSON.stringify: properties that are undefined or functions are left out.
        if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
        if (!first) text += ',';
        first = false;
        text += JSON.stringify(key) + ':' + encode(item);
      }
      return text + '}';
    }
    default:
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

/** `value` as compact JSON text, serde_json's way (see the top of this file). */
export function dumps(value) {
  return encode(value);
}
