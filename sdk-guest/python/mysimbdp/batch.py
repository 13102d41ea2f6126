"""Batch apps: the staged file in chunks (``Input``), its lines and CSV records, and the
export componentize-py looks for (``BatchIngest``).

An app module imports ``BatchIngest`` from here (so that the component exports it) and marks
its function with ``@batch.app``; the function takes ``(input, out)`` and returns a
``Quality`` (or ``None``), raising ``Reject``/``Retry`` for input it cannot handle.
"""

import codecs
import csv as _csv
import io
import itertools
import re

# Every binding module is imported here, at the top: componentize-py pre-initialises the
# app at build time and an import first made at run time fails.
from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.imports import batch_output as _batch_output
from wit_world.imports import types as _types

from ._errors import AppError, Reject
from ._output import Output
from ._quality import Quality

# How much to ask the host for per call: large enough that host calls vanish next to
# parsing, small enough to stay far below a 64 MiB memory cap.
CHUNK_BYTES = 256 * 1024

_HAS_EMIT_NDJSON = hasattr(_batch_output, "emit_ndjson")

# Rust's `BufRead::lines` error for a line that is not UTF-8, as the Rust SDK reports it.
_NOT_UTF8 = "reading input: stream did not contain valid UTF-8"

# Invalid UTF-8 in a CSV file is decoded to lone surrogates (U+DC80..U+DCFF, which valid
# UTF-8 never yields) so the C csv module can still split it; a record holding one is then
# reported as malformed, as the Rust csv crate does. The handler counts its uses, so rows are
# only searched once a file has shown invalid bytes.
_invalid_seen = [0]


def _mark_invalid(error):
    _invalid_seen[0] += 1
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error("mysimbdp.mark-invalid", _mark_invalid)
_SURROGATE = re.compile("[\udc80-\udcff]")
# The Rust csv crate has no field size limit; memory is bounded by the sandbox instead.
_csv.field_size_limit(1 << 30)

_app = None


def app(function):
    """Marks the app's batch function: ``function(input, out) -> Quality | None``."""
    global _app
    _app = function
    return function


class _Raw(io.RawIOBase):
    """The host's source as a Python raw stream, so the C buffered and text layers work."""

    def __init__(self, source):
        self._source = source

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._source.read(min(len(buffer), 1024 * 1024))
        n = len(data)
        buffer[:n] = data
        return n


class Input:
    """The file being ingested, read in chunks from the host; never whole in memory."""

    def __init__(self, source):
        self._source = source
        # A binary file object (read, readline, iteration) for any streaming parser.
        self.file = io.BufferedReader(_Raw(source), buffer_size=CHUNK_BYTES)

    def name(self):
        """The file's name as the tenant uploaded it."""
        return self._source.name()

    def size(self):
        """The file's size in bytes."""
        return self._source.size()

    def content_type(self):
        """The content type given at upload, if any."""
        return self._source.content_type()

    def read(self, size=-1):
        """Up to ``size`` bytes (all that is left with -1: mind the memory cap)."""
        return self.file.read(size)

    def byte_lines(self):
        """The file's lines as bytes, without their line endings (``\\n`` or ``\\r\\n``)."""
        for raw in self.file:
            if raw[-1:] == b"\n":
                raw = raw[:-2] if raw[-2:-1] == b"\r" else raw[:-1]
            yield raw

    def lines(self):
        """The file's lines as str, without their line endings, as Rust's ``lines()``
        splits them. A line that is not UTF-8 raises ``Reject`` (the Rust SDK's ``?``);
        the iterator stays usable after it, so an app may catch it and go on."""
        return _Lines(self.file)

    def csv(self, delimiter=","):
        """A CSV reader over the file (the first record is the header), splitting records
        as the Rust SDK's reader does: a leading UTF-8 BOM dropped, blank lines skipped,
        quoted fields over several lines, rows of any length."""
        return CsvReader(self.file, delimiter)


class _Lines:
    def __init__(self, file):
        self._file = file

    def __iter__(self):
        return self

    def __next__(self):
        raw = self._file.readline()
        if not raw:
            raise StopIteration
        if raw[-1:] == b"\n":
            raw = raw[:-2] if raw[-2:-1] == b"\r" else raw[:-1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(_NOT_UTF8) from None


class CsvError:
    """A record the reader could not return (its bytes are not UTF-8). Iterating a
    ``CsvReader`` yields one in place of the record; the reader has moved past it."""

    __slots__ = ("record", "field", "message")

    def __init__(self, record, field, valid_up_to):
        self.record = record
        self.field = field
        self.message = (
            f"CSV parse error: record {record} (field: {field}): invalid utf-8: "
            f"invalid UTF-8 in field {field} near byte index {valid_up_to}"
        )

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"CsvError({self.message!r})"


def _invalid_field(row):
    """(field index, valid bytes before the first invalid one) if ``row`` holds invalid
    UTF-8, else None."""
    for i, field in enumerate(row):
        hit = _SURROGATE.search(field)
        if hit is not None:
            return i, len(field[: hit.start()].encode("utf-8", "surrogateescape"))
    return None


class CsvReader:
    """Iterating yields each record after the header as a list of str, or a ``CsvError``
    for a record that is not UTF-8."""

    def __init__(self, file, delimiter):
        if not isinstance(delimiter, str) or len(delimiter) != 1 or not delimiter.isascii():
            raise Reject(f"CSV delimiter {delimiter!r} is not one ASCII character")
        # newline="" hands the csv module each line with its own ending (\n, \r or \r\n)
        # and leaves line breaks inside quoted fields alone.
        text = io.TextIOWrapper(
            file, encoding="utf-8", errors="mysimbdp.mark-invalid", newline=""
        )
        first = text.readline()
        if first[:1] == "\ufeff":
            first = first[1:]
        self._rows = _csv.reader(
            itertools.chain((first,), text), delimiter=delimiter, strict=False
        )
        self._header = None
        self._index = 0  # records read so far, the header included

    def headers(self):
        """The header record; a header that is not UTF-8 raises ``Reject``."""
        if self._header is None:
            row = self._next_row()
            header = [] if row is None else row
            if isinstance(header, CsvError):
                raise Reject(f"CSV: {header}")
            self._header = header
        return self._header

    def _next_row(self):
        for row in self._rows:
            if not row:  # a blank line: the Rust reader skips it
                continue
            index = self._index
            self._index += 1
            if _invalid_seen[0]:
                bad = _invalid_field(row)
                if bad is not None:
                    return CsvError(index, bad[0], bad[1])
            return row
        return None

    def __iter__(self):
        return self

    def __next__(self):
        self.headers()
        row = self._next_row()
        if row is None:
            raise StopIteration
        return row


def _sink(ids, jsons, lines_ok):
    if _HAS_EMIT_NDJSON and lines_ok:
        _batch_output.emit_ndjson("\n".join(jsons).encode("utf-8"))
    else:
        _batch_output.emit(
            [_types.Document(id=id, json=json) for id, json in zip(ids, jsons)]
        )


class BatchIngest(_exports.BatchIngest):
    """The component's export: runs the function marked ``@batch.app`` on one file."""

    def ingest(self, input):
        if _app is None:
            raise Err(_types.AppError_Reject("the app marks no function with @batch.app"))
        out = Output(_sink)
        try:
            quality = _app(Input(input), out)
        except AppError as error:
            raise Err(error._to_wit()) from None
        out.flush()
        if quality is None:
            quality = Quality()
        return quality._to_wit()
