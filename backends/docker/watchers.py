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
        self.done = threading.Event()
        self.error: RunnerError | None = None


class Watchers:
    def __init__(self, follow: Callable[[str], None]) -> None:
        """`follow(run_id)`: the work of one watcher, from the run's start to its kept end."""
        self._follow = follow
        self._lock = threading.Lock()
        self._watching: dict[str, Watching] = {}

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
        """Until the run has ended and its end is kept; raises what stopped the watcher."""
        watching = self.start(run_id)
        watching.done.wait()
        if watching.error is not None:
            raise watching.error

    def _run(self, run_id: str, watching: Watching) -> None:
        try:
            self._follow(run_id)
        except RunnerError as exc:
            watching.error = exc
        except Exception as exc:  # a watcher never dies silently: the reaper adopts the run
            log.exception("run %s: watching it failed", run_id)
            watching.error = RunnerError(f"watching the run failed: {type(exc).__name__}")
        finally:
            with self._lock:
                self._watching.pop(run_id, None)
            watching.done.set()
