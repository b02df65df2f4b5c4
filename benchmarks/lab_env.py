"""What every benchmark needs from `irlib lab up`: the environment its `export` lines give."""

from __future__ import annotations

import os
import shlex


def exports(text: str) -> dict[str, str]:
    """This process's environment with the `export K=V` lines of `irlib lab up` applied."""
    env = dict(os.environ)
    for line in text.splitlines():
        if line.startswith("export "):
            k, _, v = line[7:].partition("=")
            env[k] = shlex.split(v)[0]
    return env
