// {{name}}: a weir consumer in JavaScript.
//
// Reads JSON objects from the manifest's input topics, adds the field "tag"
// (config key `tag`) and emits the result to `{{name}}-out` with the same
// key and headers. A value that is not a JSON object is rejected.

import { exportConsumer, Reject, config, log } from './weir.js';

// Where records go; must be listed in {{name}}.toml's `output-topics`.
const OUTPUT = '{{name}}-out';

// ComponentizeJS exports the `handler` binding as weir:consumer/handler.
// Batch mode (one call per batch): `export const batchHandler =
// exportBatchConsumer(...)` instead; `weir build` (or `npm run build:batch`)
// then builds world `batch-consumer`.
export const handler = exportConsumer((ctx, event) => {
  // A value that does not parse rejects the event with the parser's message.
  const obj = event.valueJson();
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new Reject('value is not a JSON object');
  }
  obj.tag = config.getOr('tag', 'none');
  log.debug(`tagged the event at offset ${event.offset}`);
  ctx.emit(event.forwardTo(OUTPUT).json(obj));
});
