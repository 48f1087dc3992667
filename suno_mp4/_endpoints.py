"""The API's two endpoints as calls over the one :class:`Transport`: submit a video job,
and "Get Music Video Details". Their answers are checked here before anyone uses them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import cattrs

from ._convert import structure_details
from ._errors import ServerError
from ._models import VideoDetails
from ._transport import Transport
from ._untrusted import UntrustedDataError, check_id

__all__ = ["GENERATE", "RECORD_INFO", "fetch_details", "submit_job"]

GENERATE = "/api/v1/mp4/generate"
RECORD_INFO = "/api/v1/mp4/record-info"


def submit_job(
    transport: Transport,
    body: dict[str, Any],
    *,
    before_send: Callable[[], Awaitable[None] | None] | None = None,
) -> Awaitable[str]:
    """POST one job; its awaitable returns the video task id. ``before_send`` runs just
    before the request goes out (after the rate limiter): the write-ahead record. (No
    coroutine of its own: the transport checks the answer with :func:`_task_id_of`.)"""
    return transport.call(
        "POST", GENERATE, kind="submit", json_body=body, before_send=before_send, check=_task_id_of
    )


def _task_id_of(data: Any) -> str:
    """The task id of a submit's answer, checked (``taskId``; ``task_id`` or a number are
    taken too: the job was made and billed, so it is not dropped for its spelling)."""
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if type(task_id) is not str:  # (not on the usual answer's path)
        if task_id is None and isinstance(data, dict):
            task_id = data.get("task_id")
        if type(task_id) is int:
            task_id = str(task_id)
    try:
        return check_id(task_id, what="taskId")
    except UntrustedDataError as exc:
        raise ServerError(
            500, f"the API accepted the job but its answer is unusable: {exc}", endpoint=GENERATE
        ) from None


async def fetch_details(transport: Transport, task_id: str) -> VideoDetails:
    """The details of one video task. An answer about another task id is read as about
    this one (it must never resolve that other task's job)."""
    data = await transport.call(
        "GET", RECORD_INFO, kind="poll", params={"taskId": task_id}, task_id=task_id
    )
    if not isinstance(data, dict):
        raise ServerError(
            500, "details answer has no data object", endpoint=RECORD_INFO, task_id=task_id
        )
    if data.get("taskId", task_id) != task_id:
        data["extra.taskId"] = data["taskId"]
    data["taskId"] = task_id
    try:
        return structure_details(data)  # the converter's hook, without its dispatch
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        raise ServerError(
            500, f"malformed details answer: {exc}", endpoint=RECORD_INFO, task_id=task_id
        ) from exc
