"""Independent simulator runs in parallel processes: evaluations and DAgger rollouts.

Every closed-loop run is seeded and shares nothing with the others, so running them in
several processes gives the same results in the same order, sooner: on a 2-core Pi or
laptop the closed loop, not training, was most of `make model`'s time.
"""

from collections.abc import Callable, Iterable, Iterator
import concurrent.futures
import multiprocessing
import os
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
                workers: int = 1) -> Iterator[Result]:
    """fn over jobs, results in the order of the jobs; `workers` > 1 runs them in that many
    processes (`fn` must be a module-level function, its jobs and results picklable)."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) < 2:
        yield from map(fn, jobs)
        return
    # spawn, not fork: the caller may hold ONNX Runtime or PyTorch thread pools, which a
    # forked child inherits in an undefined state.
    with concurrent.futures.ProcessPoolExecutor(
            min(workers, len(jobs)), mp_context=multiprocessing.get_context('spawn')) as pool:
        yield from pool.map(fn, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
