// js-json-enrich: the JavaScript twin of the Rust `json-enrich` example, a
// map from `orders` to `orders-enriched`.
//
// Each value must be a JSON object. The output keeps the key and headers,
// adds header `weir-enriched-by: json-enrich`, and its value is the object
// plus "region" (config key `region`) and, when `price` and `quantity` are
// both numbers, "total": their product when it is finite. A tombstone is
// forwarded as a tombstone; any other value that is not a JSON object is
// rejected. Config `output` overrides the output topic.
//
// Outputs are JSON-equal to the Rust example's: JavaScript numbers do not
// keep the integer/float distinction, so where Rust writes `10.0` this
// writes `10` (and integers beyond 2^53 lose precision).
//
// The app exports both `handler` (world `consumer`, one call per event) and
// `batchHandler` (world `batch-consumer`, one call per batch, the same
// function run for each event). scripts/build-polyglot.sh builds one
// component for each: `js-json-enrich` and `js-json-enrich-batch`. An event
// is rejected before anything is emitted for it, so both give the same
// outputs.

import { exportBatchConsumer, exportConsumer, Reject, config } from './weir.js'; // sdk/js/weir.js, copied in by the build

const OUTPUT = 'orders-enriched';

function isPlainObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** price * quantity when both are numbers and the product is finite. */
function total(order) {
  const { price, quantity } = order;
  if (typeof price !== 'number' || typeof quantity !== 'number') return undefined;
  const product = price * quantity;
  return Number.isFinite(product) ? product : undefined;
}

function enrich(ctx, event) {
  const record = event.forwardTo(config.getOr('output', OUTPUT)).header('weir-enriched-by', 'json-enrich');
  if (!event.isTombstone()) {
    const order = event.valueJson();
    if (!isPlainObject(order)) throw new Reject('value is not a JSON object');
    order.region = config.require('region');
    const product = total(order);
    if (product !== undefined) order.total = product;
    record.json(order);
  }
  ctx.emit(record);
}

export const handler = exportConsumer(enrich);
export const batchHandler = exportBatchConsumer(enrich);
