// weir.js: write weir Kafka consumers in JavaScript, built as WebAssembly
// components with ComponentizeJS against weir's WIT (`wit/consumer.wit`,
// world `consumer`). One self-contained ES module, no dependencies.
//
//   import { exportConsumer, Reject, config } from './weir.js';
//
//   export const handler = exportConsumer((ctx, event) => {
//     const text = event.valueStr();
//     if (text === undefined) throw new Reject('tombstones are not expected');
//     ctx.emit(event.forwardTo(config.getOr('output', 'upper')).value(text.toUpperCase()));
//   });
//
// Returning normally means `ok`: the host produces what was emitted and may
// commit the offset. Throwing `Retry` asks the host to call again with the
// same event after a backoff; throwing `Reject` (or anything else, like `?`
// in the Rust SDK) rejects the event for good with the error's message. The
// vocabulary mirrors the Rust SDK (weir-sdk): Event, Record, ctx.emit,
// config.get/require/getOr, log.info and friends, EmitError. Durable keyed
// state per input partition is `state` (get/set/setWithTtl/delete/scan/
// scanPrefix/getJson/setJson); its writes are discarded with the emitted
// records when the handler throws, and a refused write throws StateError.
//
// Batch mode (world `batch-consumer`, built with `componentize-js -n
// batch-consumer`): `export const batchHandler = exportBatchConsumer(...)`
// with the same handler makes one component call per batch of events (up to
// `limits.max-batch`) instead of one per event, and answers one disposition
// per event. A retry then retries the whole batch, and records emitted for
// an event that is rejected are still produced (see exportBatchConsumer).

import { log as hostLog } from 'weir:consumer/log@0.2.0';
import { get as hostGet, getAll as hostGetAll } from 'weir:consumer/config@0.2.0';
import { emit as hostEmit } from 'weir:consumer/emitter@0.2.0';
import * as hostState from 'weir:consumer/state@0.2.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A handler verdict other than `ok`; throw `Retry` or `Reject`. */
export class WeirError extends Error {}

/** A transient failure: the host discards what was emitted and calls the
 * handler again with the same event after a backoff. */
export class Retry extends WeirError {
  constructor(reason) {
    super(String(reason));
    this.name = 'Retry';
  }
}

/** A permanent failure: the host discards what was emitted, reports the
 * event with the reason and moves on. */
export class Reject extends WeirError {
  constructor(reason) {
    super(String(reason));
    this.name = 'Reject';
  }
}

const EMIT_MESSAGES = {
  'topic-not-allowed': (d) => `topic \`${d}\` is not in the module's output-topics`,
  'too-large': (d) => `record is larger than the limit of ${d} bytes`,
  'too-many': (d) => `emit limit reached after ${d} records for one call (limits.max-emits or limits.max-emit-bytes)`,
  'invalid-partition': (d) => `partition ${d} is negative`,
};

/** The host refused an emitted record (a `Reject`: uncaught, it rejects the
 * event). `kind`: `topic-not-allowed`, `too-large`, `too-many` or
 * `invalid-partition`; `detail`: the topic, limit or partition. */
export class EmitError extends Reject {
  constructor(kind, detail) {
    super((EMIT_MESSAGES[kind] ?? ((d) => `${kind}: ${d}`))(detail));
    this.name = 'EmitError';
    this.kind = kind;
    this.detail = detail;
  }
}

const STATE_MESSAGES = {
  'key-too-large': (d) => `state key is longer than limits.max-state-key-bytes (${d} bytes)`,
  'value-too-large': (d) => `state value is longer than limits.max-state-value-bytes (${d} bytes)`,
  'quota-exceeded': (d) => `state write would take the partition's store over limits.state-mib (${d} MiB)`,
  'too-many': (d) => `more than ${d} state keys written for one call (limits.max-emits)`,
};

/** The host refused a state write (a `Reject`: uncaught, it rejects the
 * event, and the host discards its state writes with its emitted records).
 * `kind`: `key-too-large`, `value-too-large` (`detail`: the limit in
 * bytes), `quota-exceeded` (the store limit in MiB) or `too-many` (the
 * maximum number of keys written per call); the message names the
 * manifest setting. */
export class StateError extends Reject {
  constructor(kind, detail) {
    super((STATE_MESSAGES[kind] ?? ((d) => `state ${kind}: ${d}`))(detail));
    this.name = 'StateError';
    this.kind = kind;
    this.detail = detail;
  }
}

// The Uint8Arrays the component's bindings create (an event's key, value
// and headers; what the host returns) belong to another realm than this
// module, so `instanceof Uint8Array` is false for them: test the type tag.
const typeTag = (value) => Object.prototype.toString.call(value);

// `value` as a Uint8Array (a string as UTF-8), or undefined.
function asBytes(value) {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array || typeTag(value) === '[object Uint8Array]') return value;
  if (value instanceof ArrayBuffer || typeTag(value) === '[object ArrayBuffer]') return new Uint8Array(value);
  return undefined;
}

function toBytes(value) {
  const bytes = asBytes(value);
  if (bytes === undefined) throw new TypeError('expected a string or a Uint8Array');
  return bytes;
}

function utf8(bytes, what) {
  if (bytes === undefined) return undefined;
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new Reject(`${what} is not UTF-8: ${e.message ?? e}`);
  }
}

function lastHeader(headers, name) {
  let found;
  for (let i = 0; i < headers.length; i++) if (headers[i][0] === name) found = headers[i][1];
  return found;
}

// ------------------------------------------------------------------ JSON --

// serde_json's notation (1.0.154) for a finite non-integer number: the
// shortest digits that read back to the same value, scientific below 1e-5
// and from 1e16 up, e.g. 0.00001, 2.5, 1.5e-7, 1e+16.
function formatFloat(x) {
  const abs = Math.abs(x);
  // JavaScript writes the same shortest digits, positionally from 1e-7 up
  // to below 1e21: where both are positional (and the number is not
  // integral, which serde_json writes with `.0`), the texts are the same.
  if (abs >= 1e-5 && abs < 1e16 && !Number.isInteger(x)) return String(x);
  const [mantissa, exp] = abs.toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const point = Number(exp) + 1; // position of the decimal point
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  const len = digits.length;
  let out;
  if (point >= len && point <= 16) out = digits + '0'.repeat(point - len) + '.0';
  else if (point > 0 && point <= 16) out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  else if (point > -5 && point <= 0) out = `0.${'0'.repeat(-point)}${digits}`;
  else {
    const mantissa = len === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    out = `${mantissa}e${point > 1 ? '+' : ''}${point - 1}`;
  }
  return sign + out;
}

// `value` as JSON text; `what` names the value in the Reject thrown for
// what JSON cannot hold. Plain loops and string concatenation: the guest's
// SpiderMonkey has no JIT, and closures per item cost.
function writeJson(value, what) {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return value.toString();
    case 'number':
      if (!Number.isFinite(value)) throw new Reject(`cannot serialise the ${what}: ${value} is not valid JSON`);
      return Number.isSafeInteger(value) ? String(value) : formatFloat(value);
    case 'string':
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new Reject(`cannot serialise the ${what}: ${typeof value} is not JSON`);
  }
  let out;
  if (Array.isArray(value)) {
    out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i) out += ',';
      out += writeJson(value[i], what);
    }
    return out + ']';
  }
  const keys = Object.keys(value);
  // The default sort is UTF-16 code-unit order, the same as UTF-8 byte
  // order unless a surrogate is involved (see compareUtf8).
  keys.sort(SURROGATE.test(keys.join('')) ? compareUtf8 : undefined);
  out = '{';
  for (let i = 0; i < keys.length; i++) {
    if (i) out += ',';
    out += JSON.stringify(keys[i]) + ':' + writeJson(value[keys[i]], what);
  }
  return out + '}';
}

function stringifyJson(value, what) {
  return writeJson(value, what);
}

// Byte order of the UTF-8 encodings, as Rust sorts `String` keys. UTF-16
// code-unit order is the same unless a surrogate (U+D800..U+DFFF) is
// involved, so only keys holding one are encoded.
const SURROGATE = /[\uD800-\uDFFF]/;
function compareUtf8(a, b) {
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** JSON helpers written like the Rust SDK's (serde_json): object keys
 * sorted, no whitespace, floats in serde_json's notation. JavaScript numbers do not
 * keep the integer/float distinction, so an integral float (`10.0`) is
 * written as an integer (`10`): outputs are JSON-equal to the Rust SDK's,
 * not always byte-identical. */
export const json = {
  /** `value` as compact JSON text. */
  stringify(value) {
    return stringifyJson(value, 'record value');
  },
  /** Parses UTF-8 bytes or a string as JSON. */
  parse(data) {
    return JSON.parse(typeof data === 'string' ? data : utf8(data, 'value'));
  },
};

// ------------------------------------------------------- event and record --

/** One Kafka event: `topic`, `partition` (number), `offset` (BigInt),
 * `timestampMs` (BigInt or undefined), `key` and `value` (Uint8Array, or
 * undefined: no key, a tombstone), `headers` ([name, Uint8Array] pairs in
 * the producer's order; names may repeat). */
export class Event {
  constructor({ topic = 'test', partition = 0, offset = 0n, timestampMs, key, value, headers = [] } = {}) {
    this.topic = topic;
    this.partition = partition;
    this.offset = BigInt(offset);
    this.timestampMs = timestampMs === undefined ? undefined : BigInt(timestampMs);
    this.key = key === undefined ? undefined : toBytes(key);
    this.value = value === undefined ? undefined : toBytes(value);
    this.headers = headers.map(([k, v]) => [k, toBytes(v)]);
  }

  /** The key as text; not UTF-8 rejects the event. */
  keyStr() {
    return utf8(this.key, 'key');
  }

  /** The value as text; not UTF-8 rejects the event. */
  valueStr() {
    return utf8(this.value, 'value');
  }

  /** The value parsed as JSON; a tombstone or a value that does not parse
   * rejects the event, saying why. */
  valueJson() {
    if (this.value === undefined) throw new Reject('value is a tombstone, expected JSON');
    const text = this.valueStr();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Reject(`value is not the expected JSON: ${e.message ?? e}`);
    }
  }

  /** `true` when the event has no value. */
  isTombstone() {
    return this.value === undefined;
  }

  /** The value of the last header called `name`, or undefined. */
  header(name) {
    return lastHeader(this.headers, name);
  }

  /** `header(name)` as text; not UTF-8 rejects the event. */
  headerStr(name) {
    return utf8(this.header(name), 'header value');
  }

  /** A record for `topic` with this event's key, value and headers. */
  forwardTo(topic) {
    const record = new Record(topic);
    record.record.key = this.key;
    record.record.value = this.value;
    record.record.headers = this.headers.slice();
    return record;
  }
}

/** A record to emit; builder methods return the record, so they chain:
 * `new Record('out').key('k').json({ a: 1 }).header('h', 'v')`. */
export class Record {
  constructor(topic) {
    this.record = { topic, key: undefined, value: undefined, headers: [], partition: undefined };
  }

  /** Sets the destination topic. */
  topic(topic) {
    this.record.topic = topic;
    return this;
  }

  /** Sets the key (a string is written as UTF-8). */
  key(key) {
    this.record.key = toBytes(key);
    return this;
  }

  /** Removes the key. */
  noKey() {
    this.record.key = undefined;
    return this;
  }

  /** Sets the value (a string is written as UTF-8). */
  value(value) {
    this.record.value = toBytes(value);
    return this;
  }

  /** Sets the value to `value` written by `json.stringify`. */
  json(value) {
    return this.value(json.stringify(value));
  }

  /** Removes the value: the record is a tombstone. */
  tombstone() {
    this.record.value = undefined;
    return this;
  }

  /** Appends a header (Kafka allows the same name more than once). */
  header(name, value) {
    this.record.headers.push([name, toBytes(value)]);
    return this;
  }

  /** Removes every header called `name`. */
  removeHeader(name) {
    this.record.headers = this.record.headers.filter(([k]) => k !== name);
    return this;
  }

  /** Removes every header. */
  noHeaders() {
    this.record.headers = [];
    return this;
  }

  /** Sends the record to `partition` instead of the partitioner's choice. */
  partition(partition) {
    this.record.partition = partition;
    return this;
  }
}

// ------------------------------------------------------- config, log, emit --

// Values read during the current handler call: a batch calls the same
// handler for many events, and each host call crosses out of the component.
// Emptied when a call starts (the exports do it), so a new version of the
// manifest is always read afresh.
const configCache = new Map();

function configGet(key) {
  let value = configCache.get(key);
  if (value === undefined && !configCache.has(key)) {
    value = hostGet(key) ?? undefined;
    configCache.set(key, value);
  }
  return value;
}

/** Read-only access to the manifest's `[config]` table. */
export const config = {
  /** The value for `key`, or undefined. */
  get(key) {
    return configGet(key);
  },
  /** Every [key, value] pair, sorted by key. */
  all() {
    return hostGetAll();
  },
  /** The value for `key`, or `fallback` when it is not set. */
  getOr(key, fallback) {
    return configGet(key) ?? fallback;
  },
  /** The value for `key`; a missing key rejects the event, naming it. */
  require(key) {
    const value = configGet(key);
    if (value === undefined) throw new Reject(`config key \`${key}\` is not set`);
    return value;
  },
};

/** Log through the host: lines carry the module and the event's topic,
 * partition and offset. (`console.log` also reaches weir's log, at INFO,
 * without the event fields.) */
export const log = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error'].map((level) => [level, (message) => hostLog(level, String(message))]),
);

// ----------------------------------------------------------------- state --

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

function stateBytes(value, what) {
  const bytes = asBytes(value);
  if (bytes === undefined) {
    throw new TypeError(`state ${what} must be a string or a Uint8Array, not ${value === null ? 'null' : typeof value}`);
  }
  return bytes;
}

// A state write: the host's state-error becomes a StateError.
function stateWrite(write) {
  try {
    write();
  } catch (e) {
    const err = e?.payload ?? e;
    if (err && typeof err === 'object' && 'tag' in err) throw new StateError(err.tag, err.val);
    throw e;
  }
}

// Milliseconds (a number or a BigInt) as the WIT's u64: at least 1 ms when
// positive, Infinity (or more than u64) capped at the u64 maximum.
function ttlMillis(ttlMs) {
  if (typeof ttlMs === 'bigint') {
    if (ttlMs < 0n) throw new RangeError(`ttlMs must be zero or more, got ${ttlMs}`);
    return ttlMs > U64_MAX ? U64_MAX : ttlMs;
  }
  if (typeof ttlMs !== 'number' || !(ttlMs >= 0)) {
    throw new RangeError(`ttlMs must be a number of milliseconds, zero or more, got ${ttlMs}`);
  }
  if (ttlMs === Infinity) return U64_MAX;
  const ms = BigInt(Math.max(Math.round(ttlMs), ttlMs > 0 ? 1 : 0));
  return ms > U64_MAX ? U64_MAX : ms;
}

function keyLabel(key) {
  if (typeof key === 'string') return JSON.stringify(key);
  return `0x${Array.from(stateBytes(key, 'key'), (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** Durable keyed state, one store per module and input partition: a handler
 * sees the store of its event's partition, so keys must be co-partitioned
 * with the input (use the record key). Writes follow the event's verdict
 * like emitted records: visible at once, durable when the handler returns,
 * discarded when it throws. Keys and values are Uint8Arrays (a string is
 * written as UTF-8); a write the host refuses throws a `StateError`. */
export const state = {
  /** The value under `key` (a Uint8Array), or undefined (never set,
   * deleted or expired). */
  get(key) {
    return hostState.get(stateBytes(key, 'key')) ?? undefined;
  },
  /** Stores `value` under `key`, replacing any previous value and its
   * time-to-live. */
  set(key, value) {
    const k = stateBytes(key, 'key');
    const v = stateBytes(value, 'value');
    stateWrite(() => hostState.set(k, v));
  },
  /** Stores `value` under `key` for `ttlMs` milliseconds (a number or a
   * BigInt; host wall clock); after that the key reads as absent. */
  setWithTtl(key, value, ttlMs) {
    const k = stateBytes(key, 'key');
    const v = stateBytes(value, 'value');
    const ttl = ttlMillis(ttlMs);
    stateWrite(() => hostState.setWithTtl(k, v, ttl));
  },
  /** Removes `key` (nothing happens when it is absent). */
  delete(key) {
    const k = stateBytes(key, 'key');
    stateWrite(() => hostState.delete(k));
  },
  /** One page: up to `limit` [key, value] pairs whose key starts with
   * `prefix`, in ascending byte order, after the key `after` when given.
   * The host caps a page at 1,000 entries and 4 MiB, so a short page is not
   * the end: only an empty one is (or use `scanPrefix`). */
  scan(prefix, after = undefined, limit = 100) {
    if (!Number.isInteger(limit) || limit < 0) throw new RangeError(`limit must be an integer, zero or more, got ${limit}`);
    const entries = hostState.scan(
      stateBytes(prefix, 'prefix'),
      after === undefined || after === null ? undefined : stateBytes(after, 'key'),
      Math.min(limit, U32_MAX),
    );
    return entries.map(({ key, value }) => [key, value]);
  },
  /** Every [key, value] whose key starts with `prefix`, in ascending key
   * order, fetched `pageSize` at a time as the iteration goes (a key written
   * meanwhile shows up if it sorts after the current one). */
  *scanPrefix(prefix, pageSize = 100) {
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError(`pageSize must be a positive integer, got ${pageSize}`);
    let after;
    for (;;) {
      const page = state.scan(prefix, after, pageSize);
      if (page.length === 0) return;
      yield* page;
      after = page[page.length - 1][0];
    }
  },
  /** The value under `key` parsed as JSON, or `fallback` (default
   * undefined) when there is none; a value that does not parse rejects. */
  getJson(key, fallback = undefined) {
    const value = state.get(key);
    if (value === undefined) return fallback;
    try {
      return JSON.parse(utf8(value, `state value under key ${keyLabel(key)}`));
    } catch (e) {
      if (e instanceof Reject) throw e;
      throw new Reject(`state value under key ${keyLabel(key)} is not JSON: ${e.message ?? e}`);
    }
  },
  /** Stores `value` written as JSON (like `Record.json`) under `key`, for
   * `ttlMs` milliseconds when given. */
  setJson(key, value, ttlMs = undefined) {
    const text = stringifyJson(value, 'state value');
    if (ttlMs === undefined) state.set(key, text);
    else state.setWithTtl(key, text, ttlMs);
  },
};

// [name, bytes] pairs as WIT headers. Indexed loops rather than
// destructuring: the guest's SpiderMonkey has no JIT, and array
// destructuring goes through the iterator protocol.
function witHeaders(headers) {
  const out = new Array(headers.length);
  for (let i = 0; i < headers.length; i++) out[i] = { key: headers[i][0], value: headers[i][1] };
  return out;
}

/** What a handler can do besides returning: emit records. One per call. */
export class Context {
  constructor() {
    /** How many records the host has accepted during this call. */
    this.emitted = 0;
  }

  /** Asks the host to produce `record` if the event ends `ok`; throws an
   * `EmitError` (a `Reject`) when the host refuses it. */
  emit(record) {
    const r = record instanceof Record ? record.record : record;
    try {
      hostEmit({
        topic: r.topic,
        key: r.key,
        value: r.value,
        headers: witHeaders(r.headers),
        partition: r.partition,
      });
    } catch (e) {
      const err = e?.payload ?? e;
      if (err && typeof err === 'object' && 'tag' in err) throw new EmitError(err.tag, err.val);
      throw e;
    }
    this.emitted += 1;
  }
}

function toEvent(e) {
  const event = Object.create(Event.prototype);
  event.topic = e.topic;
  event.partition = e.partition;
  event.offset = e.offset;
  event.timestampMs = e.timestampMs;
  event.key = e.key;
  event.value = e.value;
  const headers = new Array(e.headers.length);
  for (let i = 0; i < headers.length; i++) headers[i] = [e.headers[i].key, e.headers[i].value];
  event.headers = headers;
  return event;
}

// The WIT disposition for one result: undefined is `ok`; a Retry retries,
// a Reject rejects with its message, and anything else thrown rejects with
// `"<Name>: <message>"` after its stack is logged at WARN.
const OK = Object.freeze({ tag: 'ok' });
function disposition(error) {
  if (error === undefined) return OK;
  if (error instanceof Retry) return { tag: 'retry', val: error.message };
  if (error instanceof Reject) return { tag: 'reject', val: error.message };
  log.warn(String(error?.stack ?? error));
  return { tag: 'reject', val: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
}

// An error thrown by a handler as the value it stands for: `undefined`
// (thrown as such) would read as `ok`, so it becomes an Error.
const thrown = (e) => (e === undefined ? new Error('undefined was thrown') : e);

// The consumer's `onEvent(ctx, event)`: the function itself, or the method.
function onEventOf(consumer) {
  if (typeof consumer === 'function') return consumer;
  if (consumer && typeof consumer.onEvent === 'function') return consumer.onEvent.bind(consumer);
  throw new TypeError('a consumer is a function (ctx, event) => void or an object with onEvent(ctx, event)');
}

/** The default batch behaviour, as the Rust SDK's `Consumer::on_batch`:
 * `onEvent(ctx, event)` for each event with the same `ctx`, one result per
 * event (`undefined` for ok, else what was thrown), stopping at the first
 * retry: a retry makes the host discard everything emitted during the call
 * and redeliver the whole batch, so the events after it are answered with a
 * retry instead of being handled for nothing. */
export function eachEvent(onEvent, ctx, events) {
  const results = [];
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    try {
      onEvent(ctx, event);
      results.push(undefined);
    } catch (e) {
      results.push(thrown(e));
      if (e instanceof Retry) {
        const reason = `batch will be retried: offset ${event.offset} asked for a retry`;
        while (results.length < events.length) results.push(new Retry(reason));
        break;
      }
    }
  }
  return results;
}

/** The `handler` export for a consumer (world `consumer`, one call per
 * event): a function `(ctx, event) => void` or an object with an
 * `onEvent(ctx, event)` method. Write
 * `export const handler = exportConsumer(myConsumer);` in the app module.
 * An error other than Retry/Reject rejects the event with
 * `"<Name>: <message>"` and logs its stack at WARN; it never traps. */
export function exportConsumer(consumer) {
  const onEvent = onEventOf(consumer);
  return {
    handle(event) {
      configCache.clear();
      try {
        onEvent(new Context(), toEvent(event));
      } catch (e) {
        return disposition(thrown(e));
      }
      return OK;
    },
  };
}

/** The `batchHandler` export for a consumer (world `batch-consumer`, one
 * call per batch of up to `limits.max-batch` events of one partition):
 * the same function or object as for `exportConsumer`. Write
 * `export const batchHandler = exportBatchConsumer(myConsumer);` and build
 * with `componentize-js -n batch-consumer`.
 *
 * Each call runs the object's `onBatch(ctx, events)` when it has one (it
 * returns one result per event: `undefined` for ok, or the Retry, Reject or
 * other error that decides the event), otherwise `onEvent` for each event
 * as `eachEvent` does, with one Context for the batch. An error thrown for
 * one event becomes that event's disposition without failing the others;
 * an error escaping `onBatch` decides every event of the batch the same way
 * (never a trap). Records emitted for an event that is then rejected are
 * still produced (the host cannot tell which event emitted them): emit last,
 * once the event is known to be good. A retry discards everything the batch
 * emitted. State writes follow the same rule: kept for a rejected event,
 * discarded only when the batch is retried. */
export function exportBatchConsumer(consumer) {
  const onBatch =
    typeof consumer?.onBatch === 'function'
      ? consumer.onBatch.bind(consumer)
      : ((onEvent) => (ctx, events) => eachEvent(onEvent, ctx, events))(onEventOf(consumer));
  return {
    handleBatch(events) {
      configCache.clear();
      let results;
      try {
        results = onBatch(new Context(), events.map(toEvent));
      } catch (e) {
        const verdict = disposition(thrown(e));
        return events.map(() => verdict);
      }
      // A result of another length fails the whole batch in the host, which
      // says so; it is passed on as it is.
      return results.map(disposition);
    },
  };
}
