// Stream apps: Message and the export.
//
//   export const streamIngest = streamApp((message, out) => { out.emit({...}); });
//
// The function throws reject(...)/retry(...) for a message it cannot handle; the other
// messages of the batch are unaffected. Any other exception traps the whole batch.

import { AppError, reject } from './errors.js';
import { Output } from './output.js';

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// Numbers this long can overflow f64: only then is the parsed value searched for them.
const MAYBE_HUGE = /[eE]\+?\d{3}|\d{300}/;

function checkFinite(key, value) {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new SyntaxError('number out of range');
  }
  return value;
}

/** One message from the tenant's stream. */
export class Message {
  constructor(message) {
    this.id = message.id; // stable across redeliveries
    this.payload = message.payload; // Uint8Array, as published
    this.contentType = message.contentType; // string or undefined
    this.headers = message.headers; // [[name, value], ...]
    this.attempt = message.attempt; // 1 on the first delivery
  }

  /** The payload as a string; a payload that is not UTF-8 rejects the message. */
  text() {
    try {
      return fatal.decode(this.payload);
    } catch (error) {
      throw reject(`message ${this.id} is not UTF-8: ${error.message}`);
    }
  }

  /** The payload parsed as JSON (UTF-8 only, numbers within f64); anything else rejects
   * the message with the parser's reason. */
  json() {
    let text;
    try {
      text = fatal.decode(this.payload);
    } catch (error) {
      throw reject(`message ${this.id} is not valid JSON: invalid UTF-8`);
    }
    try {
      return MAYBE_HUGE.test(text) ? JSON.parse(text, checkFinite) : JSON.parse(text);
    } catch (error) {
      throw reject(`message ${this.id} is not valid JSON: ${error.message}`);
    }
  }

  /** The value of a header, if present. */
  header(name) {
    for (const [key, value] of this.headers) if (key === name) return value;
    return undefined;
  }
}

/** The `stream-ingest` export for an app function `(message, out) => void`. */
export function streamApp(app) {
  return {
    process(messages) {
      const outcomes = new Array(messages.length);
      for (let i = 0; i < messages.length; i++) {
        const out = new Output(undefined);
        try {
          app(new Message(messages[i]), out);
        } catch (error) {
          if (!(error instanceof AppError)) throw error;
          outcomes[i] = { tag: 'err', val: error.payload };
          continue;
        }
        outcomes[i] = { tag: 'ok', val: out.documents() };
      }
      return outcomes;
    },
  };
}
