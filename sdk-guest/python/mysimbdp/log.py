"""Logging into the platform's ingestion log, with tenant, app and job attached by the host."""

from wit_world.imports import log as _host


def debug(message):
    """Write one debug line."""
    _host.log(_host.Level.DEBUG, str(message))


def info(message):
    """Write one info line."""
    _host.log(_host.Level.INFO, str(message))


def warn(message):
    """Write one warning."""
    _host.log(_host.Level.WARN, str(message))


def error(message):
    """Write one error line."""
    _host.log(_host.Level.ERROR, str(message))
