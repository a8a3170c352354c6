"""The componentize-py bindings of `wit/consumer.wit`, imported once at
module load: componentize-py snapshots the interpreter after the app module
is imported, and a guest has no filesystem to import from later."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, emitter, log, state, types

__all__ = ["Err", "config", "emitter", "exports", "log", "state", "types"]
