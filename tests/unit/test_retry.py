from hypothesis import given
from hypothesis import strategies as st

from jobq.core import retry


def test_gives_up_when_attempts_are_exhausted() -> None:
    decision = retry.decide(attempts=3, max_attempts=3, now=100.0, rand=0.5)
    assert isinstance(decision, retry.GiveUp)
    assert "3 of 3" in decision.reason


def test_not_retryable_gives_up_at_once() -> None:
    assert isinstance(retry.decide(attempts=1, max_attempts=5, now=0, rand=0, retryable=False), retry.GiveUp)


def test_backoff_doubles_with_equal_jitter() -> None:
    assert retry.backoff_delay(1, 1.0, 0.0) == 0.5
    assert retry.backoff_delay(1, 1.0, 0.999) < 1.0
    assert retry.backoff_delay(2, 1.0, 0.0) == 1.0
    assert retry.backoff_delay(3, 1.0, 0.0) == 2.0
    assert retry.backoff_delay(30, 1.0, 1.0) == retry.BACKOFF_CAP


@given(
    attempts=st.integers(1, 50),
    extra=st.integers(1, 50),
    base=st.floats(0, 60),
    rand=st.floats(0, 1, exclude_max=True),
    now=st.floats(0, 2e9),
)
def test_retry_is_in_the_future_and_bounded(
    attempts: int, extra: int, base: float, rand: float, now: float
) -> None:
    decision = retry.decide(
        attempts=attempts, max_attempts=attempts + extra, now=now, rand=rand, backoff=base
    )
    assert isinstance(decision, retry.Retry)
    assert now <= decision.at <= now + retry.BACKOFF_CAP + 1e-6
