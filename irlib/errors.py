"""The exception tree. Failing checks are data (a Check with FAIL/ERROR), not exceptions:
these are for misuse, for an unusable profile or lab, for a target that could not answer,
and for the guard refusing a mitigation.

    IrlibError                  exit 1
    ├── UsageError              exit 2: bad arguments or parameters; nothing was changed
    │   └── ProfileError        exit 2: the target profile is missing or invalid
    ├── LabError                exit 1: the drill lab cannot do what was asked
    │   └── LabNotRunning       exit 2: the lab named by --state-dir is not up
    └── TargetError             a target (API, broker, database, cluster ...) did not answer
        │                       what was asked; `results.guarded` makes it a Check
        ├── Unreachable         nothing answered: connection refused, DNS failure, reset
        ├── TimedOut            something may be there, but it did not answer in time
        ├── MissingToken        the environment variable the profile names is not set
        └── Refused             it answered, but not with what was asked: an HTTP status
                                (401/403: our credentials), an SQL error, a Kubernetes status

Every target package's client (irlib.transport for HTTP, each `_client` for a driver) raises
only these, so a check, a runbook and a mitigation catch one family whatever the target.
"""

from __future__ import annotations

from typing import Any


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


class TargetError(IrlibError):
    """A target did not answer what was asked. `facts` is what a check records of it, and
    what the verdict's could-not-check list reads (diagnosis.reason_of)."""

    @property
    def facts(self) -> dict[str, Any]:
        return {}


class Unreachable(TargetError):
    @property
    def facts(self) -> dict[str, Any]:
        return {"reachable": False}


class TimedOut(TargetError):
    @property
    def facts(self) -> dict[str, Any]:
        return {"reachable": None, "timed_out": True}


class MissingToken(TargetError):
    def __init__(self, env_name: str) -> None:
        super().__init__(f"environment variable {env_name} is not set")
        self.env_name = env_name

    @property
    def facts(self) -> dict[str, Any]:
        return {"reachable": None, "missing_token": True}


class Refused(TargetError):
    """`status_code` is the HTTP (or Kubernetes API) status when there was one. A Kubernetes
    403 also says what RBAC must grant (`permission`: verb, group, resource with its
    subresource, namespace) and the API's own message (it names the account)."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        permission: dict[str, str] | None = None,
        api_message: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.permission = permission
        self.api_message = api_message

    @property
    def auth_refused(self) -> bool:
        return self.status_code in (401, 403)

    @property
    def facts(self) -> dict[str, Any]:
        if self.status_code is None:
            return {"reachable": True}
        facts: dict[str, Any] = {
            "reachable": True,
            "http_status": self.status_code,
            "auth_refused": self.auth_refused,
        }
        if self.permission is not None:
            facts["missing_permission"] = dict(self.permission)
        if self.api_message:
            facts["api_message"] = self.api_message
        return facts
