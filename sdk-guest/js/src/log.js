// Logging into the platform's ingestion log, with tenant, app and job attached by the host.

import { log as host } from './host.js';

/** Write one debug line. */
export function debug(message) {
  host.log('debug', String(message));
}

/** Write one info line. */
export function info(message) {
  host.log('info', String(message));
}

/** Write one warning. */
export function warn(message) {
  host.log('warn', String(message));
}

/** Write one error line. */
export function error(message) {
  host.log('error', String(message));
}
