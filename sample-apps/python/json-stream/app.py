"""Sample stream app: a JSON sensor reading becomes one document per metric.

The Python port of sample-apps/json-stream, written to produce byte-identical documents.
Input: `{"device": "d-1", "ts": "2026-11-21T10:00:00Z", "site": "hel", "readings":
{"temp": 21.5, "hum": 40}}`. Output: `{device, site, ts, day, metric, value, unit}` per
reading, metrics in name order. A message that is not JSON, lacks a device or timestamp, or
carries a non-numeric reading is rejected (dead-lettered) with the reason. Parameters
`unit.<metric>` override the built-in units.
"""

from mysimbdp import params, reject, stream
from mysimbdp.stream import StreamIngest  # noqa: F401  (the export componentize-py looks up)

from transform import metrics, reading_of

_units = {}


def unit_of(metric):
    # Cached per instance: the host gives every batch a fresh instance, so parameters
    # cannot change underneath.
    unit = _units.get(metric)
    if unit is None:
        unit = params.get(f"unit.{metric}")
        if unit is None:
            unit = _default_unit(metric)
        _units[metric] = unit
    return unit


def _default_unit(metric):
    return {"temp": "C", "hum": "%", "pressure": "hPa", "co2": "ppm"}.get(metric, "")


@stream.app
def process(message, out):
    try:
        reading = reading_of(message.json(object_pairs_hook=list))
        documents = metrics(reading, unit_of)
    except ValueError as error:
        raise reject(str(error)) from None
    for document in documents:
        out.emit(document)
