"""The parameters the tenant configured for this app.

Fetched once per instance, on first use and never at import time: the component is
pre-initialised at build time, when there is no host to ask. The host gives every job or
batch a fresh instance, so the values cannot change underneath.
"""

from wit_world.imports import params as _host

from ._errors import Reject

_cache = None


def _all():
    global _cache
    if _cache is None:
        _cache = dict(_host.all())
    return _cache


def get(name, default=None):
    """The value of one parameter, or ``default`` when it is not set."""
    return _all().get(name, default)


def all():  # noqa: A001 - mirrors the WIT function's name
    """Every parameter as (name, value) pairs, sorted by name."""
    return sorted(_all().items())


def parse_or(name, default, parse):
    """A parameter parsed with ``parse`` (a function of the text), or ``default`` when it is
    not set. A value ``parse`` refuses (by raising) rejects the input naming the parameter."""
    raw = _all().get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except Exception as error:  # the tenant's parser may raise anything
        raise Reject(f"parameter {name}={raw!r}: {error}") from None
