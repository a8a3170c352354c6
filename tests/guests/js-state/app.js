// js-state: test fixture exercising weir.js `state` (0.2.0 WIT);
// the JavaScript twin of tests/guests/python-state/app.py (same behaviour, same output).
//   count:K  JSON counter, +1 (getJson/setJson); seen:K  last offset, TTL 60 s (setWithTtl)
//   V == "delete": deletes count:K; "reject": writes boom:K then throws Reject;
//   "big": a 2 MiB value -> StateError -> rejected; "catch": same, caught, kind emitted.

import { exportConsumer, Record, Reject, StateError, state } from './weir.js';

export const handler = exportConsumer((ctx, event) => {
  const key = event.keyStr() ?? 'none';
  const text = event.valueStr() ?? '';
  const boom = state.get(`boom:${key}`) !== undefined;
  let count = state.getJson(`count:${key}`, 0) + 1;
  state.setJson(`count:${key}`, count);
  state.setWithTtl(`seen:${key}`, String(event.offset), 60_000);
  const extra = {};
  if (text === 'delete') {
    state.delete(`count:${key}`);
    count = null;
  } else if (text === 'reject') {
    state.set(`boom:${key}`, new Uint8Array([49]));
    throw new Reject('asked to reject; boom and count writes must be discarded');
  } else if (text === 'big') {
    state.set(`big:${key}`, new Uint8Array(2 << 20));
  } else if (text === 'catch') {
    try {
      state.set(`big:${key}`, new Uint8Array(2 << 20));
    } catch (e) {
      if (!(e instanceof StateError)) throw e;
      extra.caught = e.kind;
    }
  }
  let keys = 0;
  for (const _ of state.scanPrefix('count:', 2)) keys++;
  const seen = new TextDecoder().decode(state.get(`seen:${key}`));
  ctx.emit(new Record('state-out').key(key).json({ key, count, keys, boom, seen, ...extra }));
});
