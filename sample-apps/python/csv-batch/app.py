"""Sample batch app: a CSV file of orders becomes one typed document per order.

The Python port of sample-apps/csv-batch, written to produce byte-identical documents:
parameters `delimiter` (one ASCII character, default `,`) and `currency` (default `EUR`); a
file whose header lacks a required column is rejected; a bad row is skipped and counted in
the quality report. Numbers and whitespace follow Rust's rules (see transform.py).
"""

from mysimbdp import Quality, batch, params, reject
from mysimbdp.batch import BatchIngest, CsvError  # noqa: F401  (BatchIngest is the export)

from transform import BadRow, columns_from_header, transform


@batch.app
def ingest(input, out):
    delimiter = params.get("delimiter", ",")
    # Rust's `char` parse: exactly one character.
    if len(delimiter) != 1:
        raise reject(f"parameter delimiter={delimiter!r}: too many characters in string"
                     if delimiter else f"parameter delimiter={delimiter!r}: cannot parse char from empty string")
    if not delimiter.isascii():
        raise reject(f"parameter delimiter={delimiter!r} is not ASCII")
    currency = params.get("currency", "EUR")

    reader = input.csv(delimiter)
    try:
        columns = columns_from_header(reader.headers())
    except ValueError as error:
        raise reject(str(error)) from None
    quality = Quality()
    emit = out.emit
    for row in reader:
        quality.record()
        if type(row) is CsvError:
            quality.bad("malformed-row", row)
            continue
        try:
            emit(transform(columns, row, currency))
        except BadRow as bad:
            quality.bad(bad.rule, f"{bad}: {','.join(row)}")
    return quality
