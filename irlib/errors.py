"""The exception tree. Failing checks are data (a Check with FAIL/ERROR), not exceptions:
these are for misuse, for an unusable profile or lab, and for the guard refusing a mitigation.

    IrlibError                  exit 1
    ├── UsageError              exit 2: bad arguments or parameters; nothing was changed
    │   └── ProfileError        exit 2: the target profile is missing or invalid
    └── LabError                exit 1: the drill lab cannot do what was asked
        └── LabNotRunning       exit 2: the lab named by --state-dir is not up
"""

from __future__ import annotations


class IrlibError(Exception):
    """Base of every error irlib raises on purpose; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(IrlibError):
    exit_code = 2


class ProfileError(UsageError):
    pass


class LabError(IrlibError):
    pass


class LabNotRunning(LabError):
    exit_code = 2
