"""Execute a runbook notebook in place of a person, as nbval will: no papermill, no injected
parameters, the profile from $IRLIB_PROFILE. Used to make the golden copies."""

from __future__ import annotations

import sys

import nbformat
from nbclient import NotebookClient


def main(source: str, target: str) -> None:
    nb = nbformat.read(source, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, target)


if __name__ == "__main__":
    main(*sys.argv[1:3])
