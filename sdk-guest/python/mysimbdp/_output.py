"""``Output``: documents leave the app in batches, never one host call per document."""

from wit_world.imports import types as _types

from ._errors import Reject
from ._json import dumps

# Flush to the host after this many documents ...
BATCH_DOCUMENTS = 2048
# ... or this many characters of JSON, whichever comes first.
BATCH_CHARS = 2 * 1024 * 1024

# WIT 0.2.0 lets a whole batch cross as one newline-delimited JSON buffer, which costs an
# interpreter far less than a list of records (one string conversion instead of thousands).
HAS_NDJSON = hasattr(_types, "Documents_Ndjson")


def _check_utf8(json):
    # A str with lone surrogates (JSON `"\ud800"` parses to one) has no UTF-8 form; say so
    # as a rejection instead of trapping in the bindings.
    if not json.isascii():
        try:
            json.encode("utf-8")
        except UnicodeEncodeError:
            raise Reject("cannot serialize document: a string is not valid Unicode") from None


class Output:
    """Where an app puts its documents. In a batch app they go to the host in batches as
    they accumulate; in a stream app they become the outcome of the current message."""

    __slots__ = ("_ids", "_jsons", "_chars", "_sink", "_lines_ok", "count")

    def __init__(self, sink=None):
        self._ids = []
        self._jsons = []
        self._chars = 0
        # Where full batches go (batch apps): a function of (ids, jsons, lines_ok).
        self._sink = sink
        # Whether the batch can cross as ndjson: no explicit ids, no raw newlines.
        self._lines_ok = True
        self.count = 0  # documents taken so far

    def emit(self, document):
        """Emit one document, a dict (serialized as serde_json would); the platform derives
        its `_id` deterministically, so a replay never duplicates it."""
        try:
            json = dumps(document)
        except (TypeError, ValueError) as error:
            raise Reject(f"cannot serialize document: {error}") from None
        self._push(None, json)

    def emit_with_id(self, id, document):
        """Emit one document with its own `_id` (a natural key stable across replays)."""
        try:
            json = dumps(document)
        except (TypeError, ValueError) as error:
            raise Reject(f"cannot serialize document: {error}") from None
        self._lines_ok = False
        self._push(str(id), json)

    def emit_json(self, json):
        """Emit a document that is already JSON object text."""
        if "\n" in json:
            self._lines_ok = False
        self._push(None, json)

    def flush(self):
        """Send what is buffered to the host now (batch apps flush on their own)."""
        if self._sink is not None and self._jsons:
            self._sink(self._ids, self._jsons, self._lines_ok)
            self._lines_ok = True
            self._ids = []
            self._jsons = []
            self._chars = 0

    def _push(self, id, json):
        _check_utf8(json)
        self._ids.append(id)
        self._jsons.append(json)
        self._chars += len(json)
        self.count += 1
        if self._sink is not None and (
            len(self._jsons) >= BATCH_DOCUMENTS or self._chars >= BATCH_CHARS
        ):
            self.flush()

    def _documents(self):
        """The collected documents as the WIT value a stream outcome carries."""
        return _to_documents(self._ids, self._jsons, self._lines_ok)


def _to_documents(ids, jsons, lines_ok):
    if HAS_NDJSON:
        if lines_ok:
            return _types.Documents_Ndjson("\n".join(jsons).encode("utf-8"))
        return _types.Documents_Records(
            [_types.Document(id=id, json=json) for id, json in zip(ids, jsons)]
        )
    return [_types.Document(id=id, json=json) for id, json in zip(ids, jsons)]
