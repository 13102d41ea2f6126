"""{{name}}: a mysimbdp stream app. Each message must be a JSON object; it is stored with the
message id beside it. Anything else is rejected (dead-lettered)."""

from mysimbdp import reject, stream
from mysimbdp.stream import StreamIngest  # noqa: F401  (the export componentize-py looks up)


@stream.app
def process(message, out):
    value = message.json()
    if not isinstance(value, dict):
        raise reject(f"message {message.id} is not a JSON object")
    out.emit({"message_id": message.id, **value})
