"""The Python SDK for mysimbdp ingestion apps (components built with componentize-py).

A batch app::

    from mysimbdp import Quality, batch
    from mysimbdp.batch import BatchIngest  # noqa: F401  (the export componentize-py looks up)

    @batch.app
    def ingest(input, out):
        quality = Quality()
        for line in input.lines():
            quality.record()
            out.emit({"line": line})
        return quality

A stream app uses ``mysimbdp.stream`` the same way (``StreamIngest``, ``@stream.app``).

Traps this package hides: the module is pre-initialised when the component is built, so
nothing here calls the host at import time (parameters are fetched on first use); every
binding module is imported eagerly at the top, because a lazy import fails at run time.
"""

from ._errors import AppError, Reject, Retry, reject, retry
from ._json import dumps, format_f64
from ._output import Output
from ._quality import Quality
from . import log, params

__all__ = [
    "AppError",
    "Output",
    "Quality",
    "Reject",
    "Retry",
    "dumps",
    "format_f64",
    "log",
    "params",
    "reject",
    "retry",
]
