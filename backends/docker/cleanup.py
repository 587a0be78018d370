"""Removing a finished run's container and volume after its caller has the answer.

Removal is the last engine round trips of a run, and the caller does not need to wait for them:
`Cleanup` takes them over and does them in a few background threads. It stays bounded: when its
queue is full, the run removes its own objects before it answers, so a slow engine slows runs
down instead of piling work up. `drain` empties it at shutdown; what a crash leaves behind is
the reaper's, by the instance and deadline labels every object carries.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("oneoff_runner.docker")

Remove = Callable[[str | None, str | None], object]


class Cleanup:
    def __init__(self, remove: Remove, workers: int, depth: int) -> None:
        self._remove = remove
        self._queue: queue.Queue[tuple[str | None, str | None] | None] = queue.Queue(depth)
        self._threads = [
            threading.Thread(target=self._work, name="oneoff-cleanup", daemon=True)
            for _ in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, container: str | None, volume: str | None) -> None:
        """Remove these soon; now, in this thread, if the queue is full."""
        try:
            self._queue.put_nowait((container, volume))
        except queue.Full:
            self._remove(container, volume)

    def idle(self, timeout: float) -> bool:
        """Wait until every removal taken so far is done; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def drain(self, timeout: float) -> None:
        """Finish what is queued (up to `timeout`), then stop the threads."""
        if not self.idle(timeout):
            log.warning("cleanup queue not empty at shutdown: the reaper will finish it")
        for _ in self._threads:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=1)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._remove(*item)
            except Exception:  # a removal that fails is the reaper's
                log.exception("background removal failed; the reaper will retry it")
            finally:
                self._queue.task_done()
