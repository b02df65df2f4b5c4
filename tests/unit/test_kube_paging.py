"""`limit`/`continue` paging of the lab's Kubernetes API (kube/paging.py): pages of one
snapshot, the remaining count of an unfiltered list, 410 Expired for a token whose list is
gone, 400 for a token that is not one; a page's body made of texts kept per object version.
End to end with kubectl in tests/lab/test_lab_size.py."""

from __future__ import annotations

import json

import pytest

from irlib.lab.kube.paging import KEEP_S, Pager
from irlib.lab.kube.resources import resource
from irlib.lab.kube.store import Store, StoreError
from irlib.lab.kube.wire import Encoded


def objs(n: int, ns: str = "trading") -> list[dict]:
    return [{"metadata": {"namespace": ns, "name": f"pod-{i:04d}"}} for i in range(n)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def names(items: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in items]


def test_pages_cover_the_list_once_in_order_with_the_remaining_count() -> None:
    everything = objs(1234)
    pager = Pager(Clock())
    seen, token, remaining = [], None, []
    while True:
        page = pager.page("pods", 7, lambda: everything, 500, token, filtered=False)
        seen += names(page.items)
        remaining.append(page.remaining)
        token = page.continue_token
        if not token:
            break
    assert seen == names(everything)
    assert remaining == [734, 234, None]


def test_a_filtered_list_reports_no_remaining_count_and_an_unlimited_list_no_token() -> None:
    pager = Pager(Clock())
    page = pager.page("pods|app=x", 1, lambda: objs(10), 4, None, filtered=True)
    assert len(page.items) == 4 and page.continue_token and page.remaining is None
    whole = pager.page("pods", 1, lambda: objs(10), 0, None, filtered=False)
    assert len(whole.items) == 10 and not whole.continue_token


def test_later_pages_come_from_the_first_pages_snapshot() -> None:
    current = objs(10)
    pager = Pager(Clock())
    first = pager.page("pods", 3, lambda: current, 4, None, filtered=False)
    current = objs(3)  # the store changed (rv 4): the paged list stays as it was at rv 3
    second = pager.page("pods", 4, lambda: current, 4, first.continue_token, filtered=False)
    assert names(second.items) == ["pod-0004", "pod-0005", "pod-0006", "pod-0007"]


def test_a_token_whose_snapshot_is_gone_is_410_expired() -> None:
    clock = Clock()
    pager = Pager(clock)
    first = pager.page("pods", 3, lambda: objs(10), 4, None, filtered=False)
    clock.t = KEEP_S + 1
    with pytest.raises(StoreError) as err:
        pager.page("pods", 9, lambda: objs(10), 4, first.continue_token, filtered=False)
    assert err.value.code == 410 and err.value.reason == "Expired"


def test_a_token_that_is_not_one_is_400() -> None:
    with pytest.raises(StoreError) as err:
        Pager(Clock()).page("pods", 1, lambda: objs(3), 2, "not-a-token", filtered=False)
    assert err.value.code == 400


def test_a_list_body_joins_each_objects_text_kept_per_resource_version() -> None:
    store, pods, encoded = Store(), resource("pods"), Encoded(keep=2)
    for i in range(3):
        store.create(pods, {"metadata": {"namespace": "trading", "name": f"p{i}"}, "spec": {}})
    items = store.list(pods)
    body = json.loads(encoded.list_response({"kind": "PodList", "metadata": {}}, items).body)
    assert body == {"kind": "PodList", "metadata": {}, "items": items}
    first = encoded.text(items[-1])
    assert encoded.text(items[-1]) is first  # kept: encoded once
    changed = store.get_copy(pods, "trading", "p2")
    assert changed is not None
    changed["spec"]["nodeName"] = "node-1"
    stored = store.update(pods, changed)  # a write stores a new object, with a new version
    assert json.loads(encoded.text(stored))["spec"] == {"nodeName": "node-1"}
    assert json.loads(encoded.text(store.get(pods, "trading", "p0")))["metadata"]["name"] == "p0"
    assert len(encoded._texts) == 2  # at most `keep` texts are kept
