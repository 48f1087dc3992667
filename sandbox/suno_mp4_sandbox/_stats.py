"""Counters of what the sandbox saw and did, for tests and benchmarks to assert on."""

from __future__ import annotations

from collections import Counter

import attrs

__all__ = ["SandboxStats"]


@attrs.define
class SandboxStats:
    """Plain counters; ``reset()`` zeroes them all (e.g. after a test's setup)."""

    #: API calls and downloads by endpoint: "generate", "record-info", "video".
    requests: Counter[str] = attrs.Factory(Counter)
    #: Accepted (billed) submits per (music task id, audio id): a double submit shows as 2.
    submits: Counter[tuple[str, str]] = attrs.Factory(Counter)
    submits_accepted: int = 0
    #: record-info calls per video task id asked about.
    polls: Counter[str] = attrs.Factory(Counter)
    #: API answers by body code (a bare 502 counts as 502).
    answers: Counter[int] = attrs.Factory(Counter)
    #: Callback POSTs the receiver answered with 2xx (a duplicate's second copy included).
    callbacks_sent: int = 0
    callbacks_dropped: int = 0
    callbacks_duplicated: int = 0
    #: Callbacks delivered before their submit was answered.
    callbacks_early: int = 0
    #: Callbacks given up on: every attempt failed, or the host was not loopback.
    callbacks_failed: int = 0
    #: Network POSTs made to receivers, retries included.
    callback_attempts: int = 0
    #: Injected faults by Faults field name (plus "rate_limit_storm").
    faults: Counter[str] = attrs.Factory(Counter)

    def reset(self) -> None:
        fresh = SandboxStats()
        for field in attrs.fields(SandboxStats):
            setattr(self, field.name, getattr(fresh, field.name))

    def as_json(self) -> dict[str, object]:
        """JSON-friendly copy: submit keys become "music_task_id/audio_id"."""
        data = attrs.asdict(self, recurse=False)
        data["submits"] = {f"{t}/{a}": n for (t, a), n in self.submits.items()}
        data["answers"] = {str(code): n for code, n in self.answers.items()}
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in data.items()}
