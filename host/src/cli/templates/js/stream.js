// {{name}}: a mysimbdp stream app. Each message must be a JSON object; it is stored with the
// message id beside it. Anything else is rejected (dead-lettered).

import { reject } from './mysimbdp/index.js';
import { streamApp } from './mysimbdp/stream.js';

export const streamIngest = streamApp((message, out) => {
  const value = message.json();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw reject(`message ${message.id} is not a JSON object`);
  }
  out.emit({ message_id: message.id, ...value });
});
