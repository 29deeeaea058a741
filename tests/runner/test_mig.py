"""remote_runner.cloud.mig against a real HTTP stand-in on loopback for the Google endpoints it calls
(tests/google_standin.py): the metadata server's token and the Compute API's instanceGroupManagers
resize and get. Every request is recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from remote_runner.cloud import mig
from remote_runner.cloud.mig import MigError, ResizeResult, metadata_token, resize_path, resize_to_zero
from tests.google_standin import GROUP, GROUP_PATH, PROJECT, ZONE, Standin, google_standin


@pytest.fixture
def standin() -> Iterator[Standin]:
    with google_standin() as state:
        yield state


def _resize(standin: Standin, group: str = GROUP, **kwargs: object) -> ResizeResult:
    pauses: list[float] = []
    result = resize_to_zero(
        PROJECT,
        ZONE,
        group,
        token_provider=metadata_token(f"{standin.url}/computeMetadata/v1"),
        endpoint=standin.endpoint,
        sleep=pauses.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return result


def test_resizes_the_group_to_zero_with_the_metadata_token(standin: Standin) -> None:
    result = _resize(standin)
    assert result == ResizeResult(GROUP, ZONE, "operation-resize-1", "RUNNING", attempts=1)
    assert standin.sizes[GROUP_PATH] == 0
    (post,) = [r for r in standin.requests if r[0] == "POST"]
    assert post == ("POST", f"{GROUP_PATH}/resize?size=0", "Bearer token-1", b"")
    assert "/compute/v1" + resize_path(PROJECT, ZONE, GROUP) == f"{GROUP_PATH}/resize?size=0"
    # Twice is harmless: the API accepts a resize to the size the group already has.
    assert _resize(standin).status == "RUNNING"


def test_transient_answers_are_retried_with_a_fresh_token(standin: Standin) -> None:
    standin.failures = [503, 429]
    result = _resize(standin)
    assert result.attempts == 3 and standin.sizes[GROUP_PATH] == 0
    auths = [r[2] for r in standin.requests if r[0] == "POST"]
    assert auths == ["Bearer token-1", "Bearer token-2", "Bearer token-3"]


def test_gives_up_after_the_attempts_with_the_last_answer(standin: Standin) -> None:
    standin.failures = [503, 503, 503]
    with pytest.raises(MigError, match=r"failed 3 times \(last: 503: stand-in answers 503\)"):
        _resize(standin, attempts=3)
    assert standin.sizes[GROUP_PATH] == 3


def test_a_refusal_is_final_and_says_what_to_check(standin: Standin) -> None:
    standin.failures = [403]
    with pytest.raises(
        MigError, match=r"refused .403: stand-in answers 403.; the head's service account needs"
    ):
        _resize(standin)
    assert len([r for r in standin.requests if r[0] == "POST"]) == 1
    with pytest.raises(
        MigError, match=r"refused .404: The resource .* was not found.; is the group still there"
    ):
        _resize(standin, group="another-group")


def test_no_metadata_server_means_no_token(standin: Standin) -> None:
    provider = metadata_token(f"{standin.url}/wrong/v1")
    with pytest.raises(MigError, match="no access token from the metadata server"):
        resize_to_zero(PROJECT, ZONE, GROUP, token_provider=provider, endpoint=standin.endpoint)
    assert standin.sizes[GROUP_PATH] == 3


def test_no_compute_api_is_transient_then_reported() -> None:
    with google_standin() as gone:
        url = gone.endpoint
    pauses: list[float] = []
    with pytest.raises(MigError, match=r"failed 2 times .last: no answer"):
        resize_to_zero(
            PROJECT, ZONE, GROUP, token_provider=lambda: "t", endpoint=url, attempts=2, sleep=pauses.append
        )
    assert pauses == [2.0]


def test_the_endpoint_must_be_http() -> None:
    with pytest.raises(MigError, match="must be an http"):
        resize_to_zero(PROJECT, ZONE, GROUP, token_provider=lambda: "t", endpoint="file:///etc/passwd")


def test_the_group_size_is_read_back(standin: Standin) -> None:
    provider = metadata_token(f"{standin.url}/computeMetadata/v1")
    assert mig.target_size(PROJECT, ZONE, GROUP, token_provider=provider, endpoint=standin.endpoint) == 3
    with pytest.raises(MigError, match=r"reading instance group other failed .404"):
        mig.target_size(PROJECT, ZONE, "other", token_provider=provider, endpoint=standin.endpoint)


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def _release(standin: Standin, budget: float = 300.0) -> tuple[mig.Release, FakeClock, list[str]]:
    clock, heard = FakeClock(), []
    result = mig.release(
        PROJECT,
        ZONE,
        GROUP,
        token_provider=metadata_token(f"{standin.url}/computeMetadata/v1"),
        endpoint=standin.endpoint,
        budget_seconds=budget,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        on_try=heard.append,
    )
    return result, clock, heard


def test_release_retries_a_refusal_with_backoff_until_the_group_reads_zero(standin: Standin) -> None:
    # a 403 (a grant not yet propagated) then 200: released on the second try, after one backoff
    standin.failures = [403]
    result, clock, heard = _release(standin)
    assert result == mig.Release(True, 0, 2, f"worker group {GROUP} is at 0")
    assert clock.sleeps == [2.0] and standin.sizes[GROUP_PATH] == 0
    assert len(heard) == 1 and "403" in heard[0] and "resize role" in heard[0]
    assert [r[0] for r in standin.requests if not r[1].startswith("/computeMetadata")] == [
        "POST",
        "POST",
        "GET",
    ]


def test_release_gives_up_at_its_budget_and_says_the_group_is_not_at_zero(standin: Standin) -> None:
    standin.refuse_always = 403
    result, clock, heard = _release(standin, budget=120.0)
    assert not result.at_zero and result.size is None
    assert "was refused (403" in result.message
    assert clock.sleeps == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0] and clock.now <= 120.0
    assert result.tries == len(heard) == 8
    assert standin.sizes[GROUP_PATH] == 3


def test_endpoints_follow_their_conventional_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mig.COMPUTE_ENV, raising=False)
    monkeypatch.delenv(mig.METADATA_ENV, raising=False)
    assert mig.compute_endpoint() == "https://compute.googleapis.com/compute/v1"
    assert mig.metadata_url() == "http://metadata.google.internal/computeMetadata/v1"
    with google_standin() as standin:
        for name, value in standin.env().items():
            monkeypatch.setenv(name, value)
        assert mig.compute_endpoint() == standin.endpoint
        # no endpoint and no metadata URL given: both come from the variables
        assert mig.target_size(PROJECT, ZONE, GROUP, token_provider=metadata_token()) == 3
        assert mig.resize_to_zero(PROJECT, ZONE, GROUP, token_provider=metadata_token()).status == "RUNNING"
        assert standin.sizes[GROUP_PATH] == 0 and standin.tokens_issued == 2


def test_a_run_records_the_machine_type_and_family_the_metadata_server_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from remote_runner.experiment import provenance

    with google_standin() as standin:
        monkeypatch.setenv("GCE_METADATA_HOST", standin.url.removeprefix("http://"))
        monkeypatch.setattr(provenance, "_machine_type", [])  # not cached from another test
        host = provenance.host()
    assert (host["machine_type"], host["machine_family"]) == ("n2d-standard-32", "n2d")
    assert host["machine_type_source"] == "google metadata server"
