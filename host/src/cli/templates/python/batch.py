"""{{name}}: a mysimbdp batch app. Each CSV record becomes one document keyed by the header;
a record with a different number of fields is counted as bad."""

from mysimbdp import Quality, batch, params, reject
from mysimbdp.batch import BatchIngest, CsvError  # noqa: F401  (BatchIngest is the export)


@batch.app
def ingest(input, out):
    delimiter = params.get("delimiter", ",")
    reader = input.csv(delimiter)
    header = [name.strip() for name in reader.headers()]
    if not header:
        raise reject("the file has no header")
    quality = Quality()
    for row in reader:
        quality.record()
        if isinstance(row, CsvError):
            quality.bad("not-utf8", row)
        elif len(row) != len(header):
            quality.bad("wrong-field-count", ",".join(row))
        else:
            out.emit(dict(zip(header, row)))
    return quality
