"""The compute pool: bounded workers, explicit timeouts, one semaphore per GPU."""

from __future__ import annotations

import threading
import time
from functools import partial

import anyio
import pytest

from forexd.daemon.compute import (
    ComputePool,
    DeviceWaitTimeoutError,
    JobTimeoutError,
    SymbolWaitTimeoutError,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("n_jobs", [1, 2, 3, 8])
async def test_comparing_n_models_on_one_gpu_in_parallel_never_hangs(n_jobs: int) -> None:
    """N jobs for the same GPU queue on its semaphore: all finish, never two at once."""
    pool = ComputePool(train_workers=4, max_concurrent_symbols=8)
    inside = 0
    peak = 0
    lock = threading.Lock()

    def job() -> int:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.02)
        with lock:
            inside -= 1
        return 1

    results: list[int] = []

    async def one() -> None:
        results.append(await pool.run(job, timeout_s=30, device="cuda:0"))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(n_jobs):
                tg.start_soon(one)
    assert [1] * n_jobs == results
    assert 1 == peak
    assert n_jobs == pool.stats().completed


async def test_cpu_jobs_run_in_parallel_up_to_train_workers() -> None:
    """CPU jobs need no device slot; the limiter bounds them at train_workers."""
    pool = ComputePool(train_workers=2, max_concurrent_symbols=4)
    inside, peak = 0, 0
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=10)

    def job() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        barrier.wait()  # proves two ran at once (it would time out otherwise)
        with lock:
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: pool.run(job, timeout_s=30))
    assert 2 == peak


async def test_a_busy_gpu_gives_a_clear_timeout_error() -> None:
    """Waiting past the timeout for a held GPU raises, naming the device."""
    pool = ComputePool(train_workers=2, max_concurrent_symbols=2)
    release, holding = threading.Event(), threading.Event()

    def held_job() -> None:
        holding.set()
        release.wait(10)

    async def hold() -> None:
        await pool.run(held_job, timeout_s=30, device="cuda:1")

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await anyio.to_thread.run_sync(holding.wait, 10)  # the holder has the slot
        with pytest.raises(DeviceWaitTimeoutError, match="cuda:1"):
            await pool.run(lambda: None, timeout_s=0.1, device="cuda:1")
        release.set()


async def test_a_job_past_its_timeout_is_abandoned_with_a_typed_error() -> None:
    """The caller gets JobTimeoutError at once; the counter records it."""
    pool = ComputePool(train_workers=1, max_concurrent_symbols=1)
    stop = threading.Event()
    with pytest.raises(JobTimeoutError, match=r"0\.1 s"):
        await pool.run(lambda: stop.wait(5), timeout_s=0.1)
    stop.set()
    assert 1 == pool.stats().timed_out


# blockbuster's wrapped time.sleep cannot be pickled into the worker process.
@pytest.mark.allow_blocking
async def test_the_process_executor_runs_jobs_elsewhere_and_kills_a_timed_out_one() -> None:
    """executor="processes": jobs run in spawned workers; a timeout kills the worker."""
    import functools
    import os

    pool = ComputePool(train_workers=1, max_concurrent_symbols=1, executor="processes")
    with anyio.fail_after(60):
        pid = await pool.run(os.getpid, timeout_s=60)
    assert os.getpid() != pid
    start = time.monotonic()
    with pytest.raises(JobTimeoutError):
        await pool.run(functools.partial(time.sleep, 30), timeout_s=1.0)
    assert time.monotonic() - start < 10
    with anyio.fail_after(60):
        assert os.getpid() != await pool.run(os.getpid, timeout_s=60)


@pytest.mark.parametrize("other", ["cuda", "CUDA", " cuda:0 ", "cuda:00"])
async def test_cuda_and_cuda_0_share_one_gpu_semaphore(other: str) -> None:
    """`cuda` and `cuda:0` name one GPU: jobs on either never run at the same time."""
    pool = ComputePool(train_workers=4, max_concurrent_symbols=4)
    inside, peak = 0, 0
    lock = threading.Lock()
    first_inside = threading.Event()

    def job() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        first_inside.set()
        time.sleep(0.05)  # long enough for the other job to get in, if it could
        with lock:
            inside -= 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(pool.run, job, timeout_s=30, device="cuda:0"))
            await anyio.to_thread.run_sync(first_inside.wait)
            tg.start_soon(partial(pool.run, job, timeout_s=30, device=other))
    assert 1 == peak
    assert 2 == pool.stats().completed


async def test_a_different_gpu_has_its_own_semaphore() -> None:
    """cuda:1 does not wait for a job holding cuda:0."""
    pool = ComputePool(train_workers=4, max_concurrent_symbols=4)
    release = threading.Event()
    started = threading.Event()

    def holder() -> None:
        started.set()
        release.wait(30)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(pool.run, holder, timeout_s=30, device="cuda"))
            await anyio.to_thread.run_sync(started.wait)
            assert 7 == await pool.run(lambda: 7, timeout_s=30, device="cuda:1")
            release.set()


async def test_a_full_symbol_semaphore_gives_a_typed_timeout_and_runs_nothing() -> None:
    """With every symbol slot busy, a job waits at most its wait timeout, then fails clearly."""
    pool = ComputePool(train_workers=2, max_concurrent_symbols=1)
    release = threading.Event()
    started = threading.Event()
    ran: list[str] = []

    def holder() -> None:
        started.set()
        release.wait(30)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(pool.run, holder, timeout_s=30))
            await anyio.to_thread.run_sync(started.wait)
            with pytest.raises(SymbolWaitTimeoutError, match="max_concurrent_symbols"):
                await pool.run(lambda: ran.append("x"), timeout_s=30, wait_timeout_s=0.05)
            release.set()
    assert [] == ran
    assert 0 == pool.stats().waiting_symbols


async def test_jobs_started_under_a_held_symbol_slot_share_it_and_run_in_parallel() -> None:
    """One symbol's cycle (K challengers) holds one slot; the jobs it starts run side by
    side in it, while another symbol's job still waits for a slot of its own."""
    pool = ComputePool(train_workers=2, max_concurrent_symbols=1)
    barrier = threading.Barrier(2, timeout=10)  # breaks unless both jobs are in at once
    ran: list[str] = []
    trained, finish = anyio.Event(), anyio.Event()

    def job() -> None:
        barrier.wait()
        ran.append("challenger")

    async def cycle() -> None:
        async with pool.symbol_slot(timeout_s=5):
            async with anyio.create_task_group() as jobs:
                for _ in range(2):
                    jobs.start_soon(partial(pool.run, job, timeout_s=20, wait_timeout_s=5))
            trained.set()
            await finish.wait()  # still holding the slot

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cycle)
            await trained.wait()
            with pytest.raises(SymbolWaitTimeoutError):  # this task holds no slot
                await pool.run(lambda: ran.append("other"), timeout_s=20, wait_timeout_s=0.05)
            finish.set()
    assert ["challenger", "challenger"] == ran
    await pool.run(lambda: ran.append("other"), timeout_s=20, wait_timeout_s=1)
    assert "other" == ran[-1]


@pytest.mark.allow_blocking
async def test_the_process_executor_pickles_jobs_and_results_off_the_event_loop() -> None:
    """A champion out and a trained forest back are megabytes: neither is pickled nor
    unpickled on the loop's thread (anyio would do both there)."""
    import functools

    from tests import _pickle_probe as probe

    pool = ComputePool(train_workers=1, max_concurrent_symbols=1, executor="processes")
    loop_thread = threading.current_thread().name
    probe.SEEN.clear()
    with anyio.fail_after(60):
        back = await pool.run(
            functools.partial(probe.echo, probe.Probe(b"x" * 1_000_000)), timeout_s=60
        )
    assert b"x" * 1_000_000 + b"!" == back.payload
    here = [(what, thread) for what, _, thread in probe.SEEN]
    assert {"pickled", "unpickled"} == {what for what, _ in here}, here
    assert all(thread != loop_thread for _, thread in here), here
