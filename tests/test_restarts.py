"""Restart policy of crashed actors: exponential backoff, reset after a healthy life, give up."""

from __future__ import annotations

from forexd.config import ActorConfig
from forexd.daemon.restarts import RestartPolicy

CFG = ActorConfig(
    restart_backoff_s=0.5,
    restart_backoff_max_s=8.0,
    max_crashes=100,
    crash_window_s=300.0,
    healthy_run_s=60.0,
)


def _crash(policy: RestartPolicy, *, life_s: float, at: float, cfg: ActorConfig = CFG) -> float:
    decision = policy.after_crash(cfg, started_at=at - life_s, now=at)
    assert not decision.give_up
    return decision.delay_s


def test_quick_crashes_double_the_backoff_up_to_the_maximum() -> None:
    """Lives that crash at once wait 0.5, 1, 2, 4, 8, 8 s."""
    policy = RestartPolicy()
    delays = [_crash(policy, life_s=0.1, at=1000.0 + i) for i in range(6)]
    assert [0.5, 1.0, 2.0, 4.0, 8.0, 8.0] == delays


def test_a_healthy_life_resets_the_backoff_to_the_first_delay() -> None:
    """After a life of healthy_run_s the next restart waits restart_backoff_s again."""
    policy = RestartPolicy()
    for i in range(5):
        _crash(policy, life_s=0.1, at=1000.0 + i)  # backoff now at its 8 s maximum
    assert 0.5 == _crash(policy, life_s=60.0, at=2000.0)
    assert 1.0 == _crash(policy, life_s=0.1, at=2001.0)  # and doubles again from there


def test_a_life_just_short_of_healthy_keeps_the_backoff_growing() -> None:
    """59.9 s is not healthy: the backoff keeps doubling."""
    policy = RestartPolicy()
    _crash(policy, life_s=0.1, at=1000.0)
    assert 1.0 == _crash(policy, life_s=59.9, at=1100.0)


def test_max_crashes_within_the_window_gives_up() -> None:
    """The third crash within the window parks the actor; older crashes fall out of it."""
    cfg = CFG.model_copy(update={"max_crashes": 3, "crash_window_s": 10.0})
    policy = RestartPolicy()
    _crash(policy, life_s=0.1, at=0.0, cfg=cfg)
    _crash(policy, life_s=0.1, at=20.0, cfg=cfg)  # the first fell out of the window
    _crash(policy, life_s=0.1, at=21.0, cfg=cfg)
    final = policy.after_crash(cfg, started_at=21.5, now=22.0)
    assert final.give_up
    assert 3 == final.crashes_in_window
