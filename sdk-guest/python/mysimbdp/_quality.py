"""``Quality``: counts of records read and rules broken, stored beside the data."""

from wit_world.imports import types as _types

# Examples are shortened to this many characters so a bad multi-megabyte row stays small.
EXAMPLE_CHARS = 200


class Quality:
    """Quality metadata a batch app returns for its file."""

    __slots__ = ("records_in", "records_bad", "_violations")

    def __init__(self):
        self.records_in = 0
        self.records_bad = 0
        # rule -> [count, first example]
        self._violations = {}

    def record(self):
        """Count one record read."""
        self.records_in += 1

    def bad(self, rule, example=""):
        """Count one record as bad because it broke ``rule``; the first example of each
        rule is kept, shortened."""
        self.records_bad += 1
        entry = self._violations.get(rule)
        if entry is None:
            self._violations[rule] = [1, str(example)[:EXAMPLE_CHARS]]
        else:
            entry[0] += 1

    def _to_wit(self):
        # Sorted by rule, as the Rust SDK's BTreeMap does (code point order = UTF-8 order).
        return _types.Quality(
            records_in=self.records_in,
            records_bad=self.records_bad,
            violations=[
                _types.Violation(rule=rule, count=count, example=example)
                for rule, (count, example) in sorted(self._violations.items())
            ],
        )
