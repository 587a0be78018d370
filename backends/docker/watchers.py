"""Who follows an async run to its end in this runner: one thread per run, however many ask.

The thread waits for the run to stop (sampling its disk meanwhile, killing it at its deadline),
then keeps its result and removes its container. Whoever asks to wait for the run (the service's
watcher, a follower of its output, an MCP task's `tasks/result`, the reaper adopting a run
nobody watches) shares that one thread: a run is never sampled twice by one runner, and its end
is kept once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from runner.errors import RunnerError

log = logging.getLogger("oneoff_runner.docker")


class Watching:
    def __init__(self) -> None:
        self.stopped = threading.Event()
        """The run's container has stopped (its end may still be being kept)."""
        self.done = threading.Event()
        self.error: RunnerError | None = None


class Watchers:
    def __init__(self, follow: Callable[[str, Callable[[], None]], None]) -> None:
        """`follow(run_id, stopped)`: the work of one watcher, from the run's start to its kept
        end; it calls `stopped()` once the run's container has stopped."""
        self._follow = follow
        self._lock = threading.Lock()
        self._watching: dict[str, Watching] = {}
        self.closing = False
        """Set at shutdown: a run that stops from then on is left for the next runner's reaper
        to keep (this runner's engine clients are going)."""

    def start(self, run_id: str) -> Watching:
        """The run's watcher, started now unless it runs already."""
        with self._lock:
            watching = self._watching.get(run_id)
            if watching is None:
                watching = self._watching[run_id] = Watching()
                thread = threading.Thread(
                    target=self._run, args=(run_id, watching), name="oneoff-watch", daemon=True
                )
                thread.start()
            return watching

    def wait(self, run_id: str) -> None:
        """Until the run has stopped (its end is kept meanwhile: whoever asks for its result
        gets it either way); raises what stopped the watcher before."""
        watching = self.start(run_id)
        watching.stopped.wait()
        if watching.error is not None:
            raise watching.error

    def settle(self, run_id: str, timeout: float) -> None:
        """Until this runner's watcher of the run, if any, is done (its end kept)."""
        with self._lock:
            watching = self._watching.get(run_id)
        if watching is not None:
            watching.done.wait(timeout)

    def close(self, timeout: float) -> None:
        """Keep no more ends, and wait up to `timeout` for those being kept; runs still going
        are left to any runner on the engine."""
        with self._lock:
            self.closing = True
            keeping = [item for item in self._watching.values() if item.stopped.is_set()]
        for watching in keeping:
            watching.done.wait(timeout)

    def _run(self, run_id: str, watching: Watching) -> None:
        try:
            self._follow(run_id, watching.stopped.set)
        except RunnerError as exc:
            watching.error = exc
        except Exception as exc:  # a watcher never dies silently: the reaper adopts the run
            log.exception("run %s: watching it failed", run_id)
            watching.error = RunnerError(f"watching the run failed: {type(exc).__name__}")
        finally:
            with self._lock:
                self._watching.pop(run_id, None)
            watching.stopped.set()
            watching.done.set()
