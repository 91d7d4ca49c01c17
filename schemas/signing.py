"""Per-gateway message authentication: HMAC-SHA256 over the bytes of a raw event.

Pure functions, no I/O: the gateway SDK signs with them when it has a key
(`GatewayConfig.hmac_key`), intake verifies with the key(s) the inventory lists
for the publishing gateway (`Gateway.hmac_key`, `Gateway.hmac_key_previous`).

Wire format
-----------
The signed bytes ("body") are the event's JSON object *without* an `hmac`
member, exactly as the gateway wrote them; for the SDK that is
`serde.encode(event)` with `hmac=None`. The message on the wire is the body with
one member appended, last, written exactly like this (no spaces, lowercase hex):

    body     {"schema_name":"compute.node_state",...,"state":"down"}
    message  {"schema_name":"compute.node_state",...,"state":"down","hmac":"<64 hex>"}

    hmac = lowercase hex of HMAC-SHA256(key = UTF-8 bytes of the key string, msg = body)

so `body = message[:-75] + b"}"`: 75 bytes are `,"hmac":"`, the 64 hex digits and `"}`.

Why the bytes as sent rather than a re-encoding of the decoded event: the raw log
is kept forever and replayed through newer code, and an upcast v1 event no longer
re-encodes to what its gateway signed; bytes need no canonical JSON (number
formatting differs between languages) and leave nothing for a parser to read
differently from what was signed (duplicate names, escapes). The body covers
gateway, seq, site, event time and every reading, so a copied message is the
same event: intake drops it as a duplicate or routes it as late, never counts
it twice (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from pydantic import SecretStr

HMAC_HEX_LEN = 64
MIN_KEY_LENGTH = 32
_OPEN = b',"hmac":"'
_CLOSE = b'"}'
SIGNATURE_BYTES = len(_OPEN) + HMAC_HEX_LEN + len(_CLOSE)  # 75
_HEX = frozenset(b"0123456789abcdef")


def check_key(value: object) -> object:
    """Pydantic `before` validator of a key field; never echoes the key in its error."""
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(text, str):
        raise ValueError(f"must be a string, not {type(text).__name__}")
    if len(text) < MIN_KEY_LENGTH:
        raise ValueError(
            f"is {len(text)} characters long, the minimum is {MIN_KEY_LENGTH}; generate one with"
            " python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


def mac(key: SecretStr, body: bytes | memoryview) -> str:
    """The hex HMAC-SHA256 of `body` under `key`."""
    return hmac.new(key.get_secret_value().encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign(body: bytes, key: SecretStr) -> tuple[bytes, str]:
    """(message, hmac): `body`, a JSON object without an hmac member, signed."""
    if len(body) < 3 or body[:1] != b"{" or body[-1:] != b"}":
        raise ValueError("can only sign a non-empty JSON object (b'{...}')")
    code = mac(key, body)
    return body[:-1] + _OPEN + code.encode("ascii") + _CLOSE, code


def has_trailing_hmac(message: bytes) -> bool:
    """Whether `message` ends with the hmac member in the wire format above."""
    return (
        len(message) > SIGNATURE_BYTES + 1
        and message.endswith(_CLOSE)
        and message[-SIGNATURE_BYTES : -SIGNATURE_BYTES + len(_OPEN)] == _OPEN
        and _HEX.issuperset(message[-HMAC_HEX_LEN - len(_CLOSE) : -len(_CLOSE)])
    )


def verify(message: bytes, keys: Sequence[SecretStr]) -> bool:
    """Whether `message` carries a trailing hmac that one of `keys` produced (constant-time)."""
    if not keys or not has_trailing_hmac(message):
        return False
    claimed = message[-HMAC_HEX_LEN - len(_CLOSE) : -len(_CLOSE)]
    view = memoryview(message)
    for key in keys:
        h = hmac.new(key.get_secret_value().encode("utf-8"), digestmod=hashlib.sha256)
        h.update(view[:-SIGNATURE_BYTES])
        h.update(b"}")
        if hmac.compare_digest(h.hexdigest().encode("ascii"), claimed):
            return True
    return False
