"""python-state: test fixture exercising weir_sdk.state (0.2.0 WIT).

Per event (key K, "none" when absent; value V as text):
  count:K  JSON counter, +1            (state.get_json / state.set_json)
  seen:K   last offset, TTL 60 s       (state.set_with_ttl)
  V == "delete": deletes count:K       (state.delete)
  V == "reject": writes boom:K, then raises Reject (the host must discard boom:K and the counter bump)
  V == "big":    writes a 2 MiB value -> StateError (value-too-large) -> rejected, message names the limit
  V == "catch":  same, but catches StateError and emits its kind instead
Emits {"key", "count", "keys": number of count:* keys (scan_prefix), "boom": whether boom:K exists,
"seen": get(seen:K)} to `state-out`."""

import weir_sdk
from weir_sdk import Reject, StateError, state


class Counter(weir_sdk.Consumer):
    def on_event(self, ctx, event):
        key = event.key_str() or "none"
        text = event.value_str() or ""
        boom = state.get(f"boom:{key}") is not None
        count = state.get_json(f"count:{key}", 0) + 1
        state.set_json(f"count:{key}", count)
        state.set_with_ttl(f"seen:{key}", str(event.offset), 60)
        extra = {}
        if text == "delete":
            state.delete(f"count:{key}")
            count = None
        elif text == "reject":
            state.set(f"boom:{key}", b"1")
            raise Reject("asked to reject; boom and count writes must be discarded")
        elif text == "big":
            state.set(f"big:{key}", b"x" * (2 << 20))
        elif text == "catch":
            try:
                state.set(f"big:{key}", b"x" * (2 << 20))
            except StateError as e:
                extra["caught"] = e.kind
        keys = sum(1 for _ in state.scan_prefix("count:", page_size=2))
        seen = state.get(f"seen:{key}")
        out = {"key": key, "count": count, "keys": keys, "boom": boom, "seen": seen.decode(), **extra}
        ctx.emit(weir_sdk.Record("state-out").key(key).json(out))


Handler = weir_sdk.export(Counter)
