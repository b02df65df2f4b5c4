"""`python -m irlib.cli`: the same command line as `irlib`."""

from irlib.cli import main

main()
