"""Running part of a computation in a forked child process, the rest in the caller, at once.

The child inherits the caller's memory copy-on-write (parsed predictions are not sent anywhere) and
sends back only its (pickled) return value. Used by ``evaluate`` to share mask areas and IoUs of
videos between two cores.
"""

import logging
import os
import pickle
import threading
from typing import Callable, List, Optional, Tuple, TypeVar

logger = logging.getLogger(__name__)

A = TypeVar("A")
B = TypeVar("B")

__all__ = ["can_fork", "default_workers", "run_forked", "wait_for_workers"]


_REAPERS: List[threading.Thread] = []  # threads waiting for the exit of children that are done


def wait_for_workers() -> None:
    """Wait until every forked worker has exited (so that its resource usage counts as ours)."""
    while _REAPERS:
        _REAPERS.pop().join()


def can_fork() -> bool:
    return hasattr(os, "fork")


def default_workers(limit: int = 2) -> int:
    """The CPUs this process may use, at most ``limit``."""
    if hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    return max(1, min(limit, n))


def run_forked(child: Callable[[], A], parent: Callable[[], B]) -> Tuple[bool, Optional[A], B]:
    """Run ``child()`` in a forked process while this process runs ``parent()``.

    Returns:
        (whether the child returned, the child's return value or None, the parent's return value).
        A child that raised or died is logged; callers then compute its part themselves (which
        raises its error, if it has one, where it can be caught).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running the parent's exit handlers
        status = 1
        try:
            os.close(read_fd)
            payload = pickle.dumps(child(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
            status = 0
        except BaseException:  # noqa: BLE001 - reported to the parent through the exit status
            pass
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        mine = parent()
    finally:
        # Read before waiting: the child blocks on a full pipe.
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        if payload:  # all sent: the child's exit (freeing its memory) need not be waited for
            reaper = threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True)
            reaper.start()
            _REAPERS.append(reaper)
        else:
            _, status = os.waitpid(pid, 0)
    if payload:
        try:
            return True, pickle.loads(payload), mine
        except (pickle.UnpicklingError, EOFError):  # cut short: the child died while sending
            status = -1
    logger.info("The forked worker ended with status %d; its part is computed here.", status)
    return False, None, mine
