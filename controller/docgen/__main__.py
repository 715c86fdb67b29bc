"""``python -m controller.docgen [--check]`` (``make docs``): fill in the generated doc sections.

With ``--check`` nothing is written; the exit status is 1 if a doc is stale.
"""

from __future__ import annotations

import argparse
import logging
import sys

from controller.docgen import ROOT, stale, write

log = logging.getLogger("controller.docgen")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller.docgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale docs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        late = stale()
        for path in late:
            log.info("stale: %s (run `make docs`)", path.relative_to(ROOT))
        return 1 if late else 0
    for path in write():
        log.info("wrote %s", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
