// AppError: how an app says "this input is bad" (reject) or "try again later" (retry).
//
// componentize-js turns an exception thrown from an export that returns a `result` into its
// `err` case only when the exception carries a `payload` (the WIT value); anything else
// traps. AppError always carries one.

export class AppError extends Error {
  constructor(tag, reason) {
    super(`${tag === 'reject' ? 'rejected' : 'retry'}: ${reason}`);
    this.name = 'AppError';
    this.reason = String(reason);
    this.payload = { tag, val: this.reason };
  }
}

/** An error refusing the input for good: `throw reject("...")`. */
export function reject(reason) {
  return new AppError('reject', reason);
}

/** An error asking the platform to retry later: `throw retry("...")`. */
export function retry(reason) {
  return new AppError('retry', reason);
}
