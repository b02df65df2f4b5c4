"""`?limit=N&continue=TOKEN` as the apiserver pages a list: at most N items, an opaque
continue token when more remain, `metadata.remainingItemCount` when the list is not
filtered by a selector, and 410 Gone (reason Expired) for a token whose list is no longer
kept. The pages of one list are cut from one snapshot (its resourceVersion), so a client
paging through 20,000 events sees one consistent list, as etcd serves it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from irlib.lab.kube.meta import Obj
from irlib.lab.kube.store import StoreError

KEEP_S = 300.0  # how long a list's snapshot serves continue tokens (etcd's compaction: 5 min)
KEEP_LISTS = 32


@dataclass(frozen=True)
class Page:
    items: list[Obj]
    continue_token: str
    remaining: int | None  # None: not reported (a filtered list, or the last page)


def _key(obj: Obj) -> str:
    meta = obj["metadata"]  # NUL: sorts as the store's (namespace, name) tuples do
    return f"{meta.get('namespace', '')}\x00{meta['name']}"


def _token(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _expired() -> StoreError:
    return StoreError(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter.",
    )


def _parse(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"]).rstrip("\x00")
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise StoreError(400, "BadRequest", "continue key is not valid") from None


class Pager:
    """The snapshots of recent paged lists, by (what was asked, resourceVersion)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lists: OrderedDict[tuple[str, int], tuple[float, list[Obj], list[str]]] = (
            OrderedDict()
        )

    def page(
        self,
        query_id: str,
        rv: int,
        items: Callable[[], list[Obj]],
        limit: int | None,
        token: str | None,
        filtered: bool,
    ) -> Page:
        """One page of the list that `items()` makes (sorted by namespace/name) as of `rv`."""
        if token:
            at, start = _parse(token)
            kept = self._kept(query_id, at)
            if kept is None:
                if at != rv:
                    raise _expired()
                kept = self._keep(query_id, rv, items())  # nothing changed since: same list
            objs, keys = kept
            first = bisect.bisect_right(keys, start)
        else:
            objs = items()
            if not limit or len(objs) <= limit:
                return Page(objs, "", None)
            objs, keys = self._keep(query_id, rv, objs)
            first = 0
        if not limit:
            return Page(objs[first:], "", None)
        chunk = objs[first : first + limit]
        rest = len(objs) - first - len(chunk)
        if rest <= 0:
            return Page(chunk, "", None)
        return Page(chunk, _token(rv, _key(chunk[-1])), None if filtered else rest)

    def _kept(self, query_id: str, rv: int) -> tuple[list[Obj], list[str]] | None:
        now = self.clock()
        for k in [k for k, v in self._lists.items() if now - v[0] > KEEP_S]:
            del self._lists[k]
        found = self._lists.get((query_id, rv))
        return (found[1], found[2]) if found else None

    def _keep(self, query_id: str, rv: int, objs: list[Obj]) -> tuple[list[Obj], list[str]]:
        found = self._lists.get((query_id, rv))
        if found is None:
            found = (self.clock(), objs, [_key(o) for o in objs])
            self._lists[(query_id, rv)] = found
            while len(self._lists) > KEEP_LISTS:
                self._lists.popitem(last=False)
        return found[1], found[2]
