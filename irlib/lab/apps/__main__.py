"""`python -m irlib.lab.apps NAME STATE_DIR`: run one platform app until SIGTERM.

Reads the lab's addresses from STATE_DIR/lab.json; tokens come from the environment.
"""

from __future__ import annotations

import importlib
import sys

from irlib.lab.apps import APPS
from irlib.lab.apps._common import setup_logging
from irlib.lab.config import LabConfig


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in APPS:
        print(f"usage: python -m irlib.lab.apps {{{','.join(APPS)}}} STATE_DIR", file=sys.stderr)
        return 2
    name, state_dir = args
    setup_logging()
    config = LabConfig.load(state_dir)
    importlib.import_module(f"irlib.lab.apps.{name}").main(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
