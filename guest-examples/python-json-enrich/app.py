"""python-json-enrich: the Python twin of the Rust `json-enrich` example,
a map from `orders` to `orders-enriched`.

Each value must be a JSON object. The output keeps the key and headers,
adds header `weir-enriched-by: json-enrich`, and its value is the object
plus "region" (config key `region`) and, when `price` and `quantity` are
both numbers, "total": their product (an integer when both are integers and
it fits in 64 bits, a float otherwise). A tombstone is forwarded as a
tombstone; any other value that is not a JSON object is rejected. Config
`output` overrides the output topic. Outputs are byte-for-byte those of the
Rust example (weir_sdk.json writes JSON the way serde_json does).

The app defines both exports: `Handler` (world `consumer`, one call per
event) and `BatchHandler` (world `batch-consumer`, one call per batch, the
same `on_event` run for each event). scripts/build-polyglot.sh builds one
component for each: `python-json-enrich` and `python-json-enrich-batch`.
An event is rejected before anything is emitted for it, so both give the
same outputs."""

import math

import weir_sdk
from weir_sdk import Reject, config

OUTPUT = "orders-enriched"
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def total(order: dict):
    """price * quantity when both are numbers and the product is finite."""
    price, quantity = order.get("price"), order.get("quantity")
    if not (is_number(price) and is_number(quantity)):
        return None
    exact = (
        isinstance(price, int)
        and isinstance(quantity, int)
        and I64_MIN <= price <= I64_MAX
        and I64_MIN <= quantity <= I64_MAX
    )
    if exact and I64_MIN <= price * quantity <= I64_MAX:
        return price * quantity
    product = float(price) * float(quantity)
    return product if math.isfinite(product) else None


class JsonEnrich(weir_sdk.Consumer):
    def on_event(self, ctx, event):
        record = event.forward_to(config.get_or("output", OUTPUT)).header(
            "weir-enriched-by", "json-enrich"
        )
        if not event.is_tombstone():
            order = event.value_json()
            if not isinstance(order, dict):
                raise Reject("value is not a JSON object")
            order["region"] = config.require("region")
            product = total(order)
            if product is not None:
                order["total"] = product
            record.json(order)
        ctx.emit(record)


Handler = weir_sdk.export(JsonEnrich)
BatchHandler = weir_sdk.export_batch(JsonEnrich)
