"""``swapctl reconcile``: the preview of what reconcile would change, then (confirmed) apply it.

The preview is the station's answer to ``reconcile`` without ``adopt``; the confirmation sends
``adopt`` with exactly the packs the preview listed, so a change that appeared in between is not
made unseen (the station leaves it and says so). Exit 0: nothing to do, or applied and the
journal now agrees with the sensors; 1: refused, not confirmed, or packs left to inspect;
2: no reply, no broker.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from controller.cli.commands import connect
from controller.console.client import OperatorClient
from controller.console.results import reconcile_lines
from controller.contract import Reply
from controller.contract.results import ReconcileReport

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


async def reconcile(
    op: OperatorClient, *, as_json: bool, timeout_s: float, confirm: Callable[[str], bool]
) -> int:
    if not await connect(op, timeout_s):
        return EXIT_UNAVAILABLE
    try:
        reply = await op.command("reconcile", {}, timeout_s=timeout_s)
        preview = _report(reply)
        if isinstance(preview, int):
            return preview
        _print(preview, as_json=as_json)
        todo = [c.pack_id for c in preview.changes if c.action != "left"]
        if not todo:
            return EXIT_OK if preview.consistent_after else EXIT_FAILED
        if not confirm(f"journal these {len(todo)} change(s) under your name?"):
            print("not confirmed: nothing changed", file=sys.stderr)
            return EXIT_FAILED
        reply = await op.command("reconcile", {"adopt": ",".join(todo)}, timeout_s=timeout_s)
        done = _report(reply)
        if isinstance(done, int):
            return done
        _print(done, as_json=as_json)
        return EXIT_OK if done.consistent_after else EXIT_FAILED
    finally:
        await op.stop()


def _report(reply: Reply | None) -> ReconcileReport | int:
    """The reply's report, or the exit code of a missing or refused reply (said on stderr)."""
    if reply is None:
        print("swapctl: no reply from the station", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not reply.ok or reply.result is None:
        print(f"refused: reconcile: {reply.error}")
        return EXIT_FAILED
    return ReconcileReport.model_validate(reply.result)


def _print(report: ReconcileReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(reconcile_lines(report)))
