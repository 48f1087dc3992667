"""What happened to each task's callbacks, attempt by attempt: the answer of every POST to
its ``callBackUrl`` and what the faults did instead. Read by the dashboard and by tests.

Bounded twice over, since a sandbox may run for days and a receiver may answer anything:
a task keeps its last ``per_task`` entries, the log its last ``tasks`` tasks, and an entry
holds a status number or one of a few fixed phrases, never text a receiver sent.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import aiohttp
import attrs

__all__ = ["CallbackEvent", "CallbackLog", "describe_failure"]

#: Entries kept per task: 3 attempts of each of 2 copies (a duplicate), with room to spare.
PER_TASK = 20
#: Tasks whose entries are kept; older ones are forgotten first.
TASKS = 10_000


@attrs.frozen
class CallbackEvent:
    """One thing that happened to a task's callback.

    An attempt has ``attempt`` (1 for the first POST of a copy, 2 and on for its retries)
    and either the receiver's HTTP ``status`` or, when none came, ``outcome`` says why.
    A note (``attempt`` None) is what the sandbox did instead of or around a POST: a
    dropped, delayed or duplicated callback, a host that is not loopback.
    """

    #: Sandbox clock time, epoch seconds.
    at: float
    #: What a person reads: "HTTP 200", "cannot connect", "dropped (fault)".
    outcome: str
    attempt: int | None = None
    status: int | None = None

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it (answered 2xx)."""
        return self.status is not None and 200 <= self.status < 300

    def as_json(self) -> dict[str, object]:
        return {**attrs.asdict(self), "delivered": self.delivered}


class CallbackLog:
    """The recent :class:`CallbackEvent` of each task, oldest first."""

    def __init__(self, *, per_task: int = PER_TASK, tasks: int = TASKS) -> None:
        if per_task < 1 or tasks < 1:
            raise ValueError("a callback log keeps at least one entry of one task")
        self._per_task = per_task
        self._tasks = tasks
        self._events: OrderedDict[str, deque[CallbackEvent]] = OrderedDict()

    def add(self, task_id: str, event: CallbackEvent) -> None:
        events = self._events.get(task_id)
        if events is None:
            events = self._events[task_id] = deque(maxlen=self._per_task)
            while len(self._events) > self._tasks:
                self._events.popitem(last=False)
        events.append(event)

    def of(self, task_id: str) -> tuple[CallbackEvent, ...]:
        """The task's kept entries, oldest first (empty for a task never called back)."""
        return tuple(self._events.get(task_id, ()))


def describe_failure(exc: BaseException) -> str:
    """A fixed phrase for an attempt that got no HTTP answer (never the exception's text,
    which may hold a host name or path the page should not show)."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    return "network error"
