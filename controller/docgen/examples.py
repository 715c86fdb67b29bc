"""Keep the JSON examples of docs/mqtt-api.md equal to the payloads the exporter builds.

The page's examples are hand-placed (each under the topic it belongs to) but their content is
the model's: ``tests/test_contract.py`` checks that every block equals a generated example. When
a model gains a field, this rewrites each stale block with the generated payload it is a
restriction of (same values for every key the block has), so adding a field is ``make docs``
rather than editing JSON by hand. A block that matches no generated payload is left alone, and
the test then names it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from controller.contract.codec import encode
from controller.contract.examples import example_payloads

FENCE = re.compile(r"^```json(?P<topic> \S+)?\n(?P<body>.*?)^```$", re.M | re.S)


def _generated() -> list[Any]:
    return [
        json.loads(encode(m))
        for items in example_payloads().values()
        for m in items
        if isinstance(m, BaseModel)
    ]


def _restricts(block: Any, full: Any) -> bool:
    """``block`` is ``full`` with some dict keys missing (recursively), and nothing else."""
    if isinstance(block, dict) and isinstance(full, dict):
        return all(k in full and _restricts(v, full[k]) for k, v in block.items())
    if isinstance(block, list) and isinstance(full, list):
        return len(block) == len(full) and all(map(_restricts, block, full))
    return bool(block == full)


def refresh_json_examples(text: str) -> str:
    """``text`` with each stale JSON example replaced by the generated payload it restricts."""
    generated = _generated()

    def fix(m: re.Match[str]) -> str:
        try:
            body = json.loads(m["body"])
        except ValueError:
            return m[0]
        if body in generated:
            return m[0]
        for full in generated:
            if _restricts(body, full):
                return f"```json{m['topic'] or ''}\n{json.dumps(full, indent=2)}\n```"
        return m[0]

    return FENCE.sub(fix, text)
