"""{{name}}: a weir consumer in Python.

Reads JSON objects from the manifest's input topics, adds the field "tag"
(config key `tag`) and emits the result to `{{name}}-out` with the same key
and headers. A value that is not a JSON object is rejected.
"""

import weir_sdk
from weir_sdk import Reject, config, log

# Where records go; must be listed in {{name}}.toml's `output-topics`.
OUTPUT = "{{name}}-out"


class Module(weir_sdk.Consumer):
    def on_event(self, ctx, event):
        # A value that does not parse rejects the event with the parser's message.
        obj = event.value_json()
        if not isinstance(obj, dict):
            raise Reject("value is not a JSON object")
        obj["tag"] = config.get_or("tag", "none")
        log.debug(f"tagged the event at offset {event.offset}")
        ctx.emit(event.forward_to(OUTPUT).json(obj))


# componentize-py exports the class named `Handler` of the app module.
# Batch mode (one call per batch): `BatchHandler = weir_sdk.export_batch(Module)`
# instead; `weir build` then builds world `batch-consumer` (see README.md).
Handler = weir_sdk.export(Module)
