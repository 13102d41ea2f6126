"""Stream apps: ``Message`` and the export componentize-py looks for (``StreamIngest``).

An app module imports ``StreamIngest`` from here (so the component exports it) and marks its
function with ``@stream.app``; the function takes ``(message, out)``, emits the message's
documents and raises ``Reject``/``Retry`` for a message it cannot handle.
"""

import json as _json
import math

# Every binding module is imported here, at the top (see mysimbdp.batch).
from componentize_py_types import Err, Ok
from wit_world import exports as _exports
from wit_world.imports import types as _types

from ._errors import AppError, Reject
from ._output import Output

_app = None


def app(function):
    """Marks the app's stream function: ``function(message, out) -> None``."""
    global _app
    _app = function
    return function


def _parse_float(text):
    value = float(text)
    if math.isinf(value):
        # serde_json refuses a number beyond f64, so the Rust SDK rejects the message too.
        raise ValueError(f"number out of range: {text}")
    return value


def _parse_constant(name):
    raise ValueError(f"{name} is not JSON")


class Message:
    """One message from the tenant's stream."""

    __slots__ = ("id", "payload", "content_type", "headers", "attempt")

    def __init__(self, message):
        self.id = message.id  # stable across redeliveries
        self.payload = message.payload  # bytes, as published
        self.content_type = message.content_type
        self.headers = message.headers  # [(name, value)]
        self.attempt = message.attempt  # 1 on the first delivery

    def text(self):
        """The payload as str; a payload that is not UTF-8 rejects the message."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as error:
            raise Reject(f"message {self.id} is not UTF-8: {error}") from None

    def json(self, **options):
        """The payload parsed as strict JSON (UTF-8 only, no NaN or Infinity, numbers within
        f64); anything else rejects the message with the parser's reason. ``options`` go to
        ``json.loads`` (``object_pairs_hook`` to see duplicate keys, for example)."""
        try:
            text = self.payload.decode("utf-8")
            return _json.loads(
                text, parse_float=_parse_float, parse_constant=_parse_constant, **options
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise Reject(f"message {self.id} is not valid JSON: {error}") from None

    def header(self, name):
        """The value of a header, if present."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class StreamIngest(_exports.StreamIngest):
    """The component's export: runs the function marked ``@stream.app`` per message."""

    def process(self, messages):
        outcomes = []
        function = _app
        for message in messages:
            if function is None:
                outcomes.append(Err(_types.AppError_Reject("the app marks no function with @stream.app")))
                continue
            out = Output()
            try:
                function(Message(message), out)
            except AppError as error:
                outcomes.append(Err(error._to_wit()))
                continue
            outcomes.append(Ok(out._documents()))
        return outcomes
