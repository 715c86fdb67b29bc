"""Encode and decode payloads, with every way a payload can be bad turned into one error."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from controller.contract.common import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES
from controller.errors import SwapstationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class PayloadError(SwapstationError):
    """A payload is not valid JSON, not the right schema, or too large.

    ``reason`` is short and safe to publish in an error event; ``excerpt`` is the start of the
    payload, decoded leniently.
    """

    def __init__(self, reason: str, payload: bytes) -> None:
        self.reason = reason
        self.excerpt = payload[:120].decode("utf-8", errors="replace")
        super().__init__(reason)


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=False).encode()


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _load_json(payload: bytes, max_bytes: int) -> Any:
    if len(payload) > max_bytes:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {max_bytes}", payload)
    too_deep = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    try:
        data = json.loads(payload)
    except RecursionError:
        raise PayloadError(too_deep, payload) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int over 4300 digits
        raise PayloadError(f"not JSON: {exc}", payload) from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise PayloadError(too_deep, payload)
    return data


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode(model: type[M], payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> M:
    """Parse ``payload`` as ``model``; raise :class:`PayloadError` saying why not."""
    data = _load_json(payload, max_bytes)
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object, got {type(data).__name__}", payload)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(f"schema: {_describe(exc)}", payload) from None


def decode_as(adapter: TypeAdapter[T], payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> T:
    """Like :func:`decode` for a union such as ``EventAdapter``."""
    data = _load_json(payload, max_bytes)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise PayloadError(f"schema: {_describe(exc)}", payload) from None
