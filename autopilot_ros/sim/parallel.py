"""Independent simulator runs in parallel processes: evaluations and DAgger rollouts.

Every closed-loop run is seeded and shares nothing with the others, so running them in
several processes gives the same results in the same order, sooner: on a 2-core Pi or
laptop the closed loop, not training, was most of `make model`'s time.
"""

from collections.abc import Callable, Iterable, Iterator
import concurrent.futures
import contextlib
import multiprocessing
import os
import signal
from typing import TypeVar

Job = TypeVar('Job')
Result = TypeVar('Result')


def default_workers() -> int:
    """Processes for simulator runs: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def process_map(fn: Callable[[Job], Result], jobs: Iterable[Job],
                workers: int = 1,
                pool: concurrent.futures.Executor | None = None) -> Iterator[Result]:
    """fn over jobs, results in the order of the jobs; `workers` > 1 runs them in that many
    processes (`fn` must be a module-level function, its jobs and results picklable).

    `pool`: one from `process_pool`, kept over many calls (a search sailing generation after
    generation): a spawned process imports its modules once, not once per call.
    """
    jobs = list(jobs)
    if workers <= 1 or len(jobs) < 2:
        yield from map(fn, jobs)
        return
    chunksize = max(1, len(jobs) // (8 * workers))
    if pool is not None:
        yield from pool.map(fn, jobs, chunksize=chunksize)
        return
    with _spawn_pool(min(workers, len(jobs))) as own:
        yield from own.map(fn, jobs, chunksize=chunksize)


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[concurrent.futures.Executor | None]:
    """A pool of `workers` processes for many `process_map` calls (None for one worker).

    Ctrl-C is the caller's alone: the workers ignore it, and on the way out the jobs not
    started are dropped, so an interrupted search stops within a run, with one message.
    """
    if workers <= 1:
        yield None
        return
    pool = _spawn_pool(workers, initializer=_ignore_sigint)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _spawn_pool(workers: int, initializer: Callable[[], None] | None = None
                ) -> concurrent.futures.ProcessPoolExecutor:
    # spawn, not fork: the caller may hold ONNX Runtime or PyTorch thread pools, which a
    # forked child inherits in an undefined state.
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context('spawn'), initializer=initializer)
