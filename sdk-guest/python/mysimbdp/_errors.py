"""``AppError``: how an app says "this input is bad" (reject) or "try again later" (retry)."""

from wit_world.imports import types as _types


class AppError(Exception):
    """Why an app could not handle its input. Raise ``Reject`` or ``Retry``."""

    def __init__(self, reason):
        super().__init__(str(reason))
        self.reason = str(reason)

    def _to_wit(self):
        raise NotImplementedError


class Reject(AppError):
    """The input is bad and will never succeed: the platform quarantines the file or
    dead-letters the message with this reason, and never retries it."""

    def _to_wit(self):
        return _types.AppError_Reject(self.reason)


class Retry(AppError):
    """A transient failure: the platform retries later, a bounded number of times."""

    def _to_wit(self):
        return _types.AppError_Retry(self.reason)


def reject(reason):
    """An error refusing the input for good (``raise reject("...")``)."""
    return Reject(reason)


def retry(reason):
    """An error asking the platform to retry later (``raise retry("...")``)."""
    return Retry(reason)
