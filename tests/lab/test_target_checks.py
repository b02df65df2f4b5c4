"""HTTP, PostgreSQL and Redis checks against the lab's real servers, and against a port
where nothing listens or a server that never answers."""

from __future__ import annotations

from irlib.http.checks import check_endpoint
from irlib.lab import procs
from irlib.postgres.checks import check_connection_count, check_connectivity
from irlib.profile import load_profile
from irlib.redis.checks import check_ping
from irlib.results import Status
from tests.helpers import LabHandle


def test_http_check_ok_against_the_lab_api(lab: LabHandle) -> None:
    profile = load_profile(lab.exports["IRLIB_PROFILE"])
    check = check_endpoint("api health", profile.api.url + "/health", target="api")
    assert check.status is Status.OK, check.summary
    assert check.facts["http_status"] == 200


def test_http_check_fails_where_nothing_listens() -> None:
    port = procs.free_port()
    check = check_endpoint("api health", f"http://127.0.0.1:{port}/health", target="api")
    assert check.status is Status.FAIL and "unreachable" in check.summary


def test_http_check_is_an_error_at_its_timeout(silent_port: int) -> None:
    # the silent port never answers: only the check's own 0.5 s timeout can end it
    check = check_endpoint(
        "broker", f"http://127.0.0.1:{silent_port}/health", target="broker", timeout_s=0.5
    )
    assert check.status is Status.ERROR and "0.5 s" in check.summary


def test_http_check_with_a_missing_token_variable_is_an_error(lab: LabHandle) -> None:
    profile = load_profile(lab.exports["IRLIB_PROFILE"])
    check = check_endpoint(
        "broker auth",
        profile.broker.url + "/v1/auth/test",
        target="broker",
        token_env="IRLIB_TEST_TOKEN_THAT_IS_NOT_SET",
    )
    assert check.status is Status.ERROR and "IRLIB_TEST_TOKEN_THAT_IS_NOT_SET" in check.summary


def test_postgres_checks_against_the_lab(lab: LabHandle) -> None:
    profile = load_profile(lab.exports["IRLIB_PROFILE"])
    assert check_connectivity(profile.postgres.dsn).status is Status.OK
    count = check_connection_count(profile.postgres.dsn)
    assert count.status is Status.OK
    assert 0 < count.facts["connections"] <= count.facts["max_connections"]


def test_postgres_check_fails_where_nothing_listens() -> None:
    port = procs.free_port()
    check = check_connectivity(f"postgresql://postgres@127.0.0.1:{port}/trading", timeout_s=1)
    assert check.status is Status.FAIL and "cannot connect" in check.summary


def test_redis_ping_against_the_lab_and_a_dead_port(lab: LabHandle) -> None:
    profile = load_profile(lab.exports["IRLIB_PROFILE"])
    assert check_ping(profile.redis.url).status is Status.OK
    dead = check_ping(f"redis://127.0.0.1:{procs.free_port()}/0", timeout_s=1)
    assert dead.status is Status.FAIL


def test_redis_ping_is_an_error_when_the_server_never_answers(silent_port: int) -> None:
    check = check_ping(f"redis://127.0.0.1:{silent_port}/0", timeout_s=0.5)
    assert check.status is Status.ERROR
