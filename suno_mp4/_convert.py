"""The one cattrs converter: the API's wire format (camelCase, snake_case callbacks, two time
shapes) to and from the SDK's snake_case models."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._models import (
    _EMPTY,
    CallbackPayload,
    MusicVideo,
    TaskStatus,
    VideoDetails,
    VideoRequest,
    utcnow,
)
from ._untrusted import printable

__all__ = ["converter", "parse_time", "utcnow"]

T = TypeVar("T")

converter = cattrs.Converter()


_NUMBER = re.compile(r"\d+(\.\d+)?")
_STRING_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


#: Times outside this range are no time the API can mean (and near year 9999 adding the
#: 14-day retention overflows): they read as unknown.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
#: The range in epoch milliseconds, a second inside it (no rounding reaches its ends).
_EARLIEST_MS = round(EARLIEST.timestamp() * 1000) + 1000
_LATEST_MS = round(LATEST.timestamp() * 1000) - 1000


def parse_time(value: object, _type: object = None) -> datetime | None:
    """Both documented time shapes: epoch milliseconds and ``"YYYY-MM-DD HH:MM:SS"`` (UTC).

    Epoch seconds are accepted too (a value too small to be milliseconds). Anything else,
    and any time before 2000 or after 2200, is ``None``: a time the SDK cannot read must
    not break the parse of a whole answer.
    """
    if type(value) is int and _EARLIEST_MS < value < _LATEST_MS:
        # Epoch milliseconds well inside the range (the usual answer): the one reading.
        return datetime.fromtimestamp(value / 1000, UTC)
    if value is None:
        return None
    parsed = _parse_time(value)
    if parsed is None or not EARLIEST <= parsed < LATEST:
        return None
    return parsed


def _parse_time(value: object) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()[:64]
        shape = _STRING_TIME.match(text)
        if shape is not None:
            # UTC unless the text names a zone: said in the text, not by a later
            # ``replace(tzinfo=...)`` (it runs twice for every poll, and that costs more).
            zone = shape.group(2)
            if zone is None or zone == "Z":
                text = text.removesuffix("Z") + "+00:00"
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                return None
        if _NUMBER.fullmatch(text):
            value = float(text)
        else:
            return None
    if isinstance(value, int | float):
        try:  # a 400-digit int cannot even be divided into a float
            seconds = value / 1000 if value > 100_000_000_000 else float(value)
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _time_ms(value: datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


def _lenient_int(value: object, _type: object = None) -> int | None:
    if type(value) is int:
        return value
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _lenient_str(value: object, _type: object = None) -> str | None:
    if type(value) is str or value is None:
        return value
    return value if isinstance(value, str) else str(value)


_STATUSES: dict[str, TaskStatus] = {member.value: member for member in TaskStatus}


def _status(value: object, _type: object = None) -> TaskStatus:
    if isinstance(value, TaskStatus):
        return value
    known = _STATUSES.get(value) if type(value) is str else None
    if known is not None:
        return known  # the usual case: a documented flag, as sent
    if isinstance(value, str) and value:
        return TaskStatus(printable(value.strip(), 64))  # an unknown flag is kept: bound it
    if value is None or value == "":
        return TaskStatus.PENDING
    # Not text (1, true, a list): an unknown flag too (a video URL beside it is a success).
    return TaskStatus(printable(str(value)[:64], 64))


converter.register_structure_hook(TaskStatus, _status)
converter.register_unstructure_hook(TaskStatus, lambda s: s.value)
# The functions themselves (they take the type and ignore it), not a lambda around each:
# these run for every field of every answer.
converter.register_structure_hook(datetime, parse_time)
converter.register_structure_hook(int | None, _lenient_int)
converter.register_structure_hook(str | None, _lenient_str)
converter.register_structure_hook(datetime | None, parse_time)
converter.register_unstructure_hook(datetime, _time_ms)
converter.register_unstructure_hook(datetime | None, _time_ms)


def extra_hooks(
    cls: type[T], renames: Mapping[str, str], *, flatten: Callable[[dict[str, Any]], None] | None
) -> tuple[Callable[[Any, object], T], Callable[[T], dict[str, Any]]]:
    """camelCase hooks for ``cls`` (structure, unstructure) that keep unknown wire keys in
    ``extra``, generated by cattrs."""
    overrides = {name: override(rename=wire) for name, wire in renames.items()}
    overrides["extra"] = override(omit=True)
    structure = make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
    unstructure = make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
    known = {renames.get(a.name, a.name) for a in attrs.fields(cls) if a.name != "extra"}  # type: ignore[arg-type]

    def structure_hook(data: Any, _type: object) -> T:
        if type(data) is not dict and not isinstance(data, Mapping):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
        wire = dict(data)
        if flatten is not None:
            flatten(wire)
        extra = {k: v for k, v in wire.items() if k not in known}
        obj = structure(wire, cls)  # it reads the fields it knows; the others are in extra
        return attrs.evolve(obj, extra=extra) if extra else obj  # type: ignore[misc]

    def unstructure_hook(obj: T) -> dict[str, Any]:
        wire: dict[str, Any] = dict(getattr(obj, "extra", {}))
        wire.update(unstructure(obj))
        return wire

    return structure_hook, unstructure_hook


def _with_extra(
    cls: type[T], renames: Mapping[str, str], *, flatten: Callable[[dict[str, Any]], None] | None
) -> None:
    """Register :func:`extra_hooks` for ``cls``."""
    structure_hook, unstructure_hook = extra_hooks(cls, renames, flatten=flatten)
    converter.register_structure_hook(cls, structure_hook)
    converter.register_unstructure_hook(cls, unstructure_hook)


def _flatten_details(wire: dict[str, Any]) -> None:
    # The URL sits in a nested object on the wire: {"response": {"videoUrl": ...}}.
    response = wire.pop("response", None)
    if type(response) is dict or isinstance(response, Mapping):
        wire["videoUrl"] = response.get("videoUrl")
        for key, value in response.items():
            if key != "videoUrl":
                wire[f"response.{key}"] = value
    elif response is not None:
        wire["response"] = response


_DETAILS_RENAMES = {
    "task_id": "taskId",
    "status": "successFlag",
    "video_url": "videoUrl",
    "music_id": "musicId",
    "audio_id": "audioId",
    "callback_url": "callbackUrl",
    "music_index": "musicIndex",
    "created_at": "createTime",
    "completed_at": "completeTime",
    "error_code": "errorCode",
    "error_message": "errorMessage",
}

_DETAILS_KNOWN = frozenset(_DETAILS_RENAMES.values())


#: The keys of a details answer with nothing to keep in ``extra`` (the usual answer).
_DETAILS_PLAIN = _DETAILS_KNOWN | {"response"}


def structure_details(data: Any, _type: object = None) -> VideoDetails:
    """A details answer (``data`` of record-info) as :class:`VideoDetails`: what the hooks
    :func:`extra_hooks` generates for it do, written out (it runs for every poll; a test
    checks the two agree on arbitrary answers). The answer is read where it is; a copy is
    flattened only when it has fields to keep in ``extra``."""
    if type(data) is not dict and not isinstance(data, Mapping):
        raise TypeError(f"expected a JSON object for VideoDetails, got {type(data).__name__}")
    if "taskId" not in data:
        raise TypeError("details without taskId")
    get = data.get
    response = get("response")
    if type(response) is dict or isinstance(response, Mapping):
        video_url = response.get("videoUrl")  # the nested URL wins, as when flattened
        plain = len(response) == ("videoUrl" in response)
    else:
        video_url = get("videoUrl")
        plain = response is None
    extra: Mapping[str, object] = _EMPTY
    if not plain or not data.keys() <= _DETAILS_PLAIN:
        wire = dict(data)
        _flatten_details(wire)
        extra = {k: v for k, v in wire.items() if k not in _DETAILS_KNOWN} or _EMPTY
    return VideoDetails(
        str(data["taskId"]),
        _status(get("successFlag")),
        _lenient_str(video_url),
        _lenient_str(get("musicId")),
        _lenient_str(get("audioId")),
        _lenient_str(get("callbackUrl")),
        _lenient_int(get("musicIndex")),
        parse_time(get("createTime")),
        parse_time(get("completeTime")),
        _lenient_int(get("errorCode")),
        _lenient_str(get("errorMessage")),
        extra,
    )


# Structured by the hook written out above; unstructured by the generated one.
converter.register_structure_hook(VideoDetails, structure_details)
converter.register_unstructure_hook(
    VideoDetails, extra_hooks(VideoDetails, _DETAILS_RENAMES, flatten=_flatten_details)[1]
)


def _flatten_callback(wire: dict[str, Any]) -> None:
    # The task and its URL are read from ``data`` only: the same names outside it are not
    # the contract's, and are dropped rather than taken for them.
    wire.pop("task_id", None)
    wire.pop("video_url", None)
    data = wire.pop("data", None)
    if isinstance(data, Mapping):
        for key, value in data.items():
            wire[key if key in ("task_id", "video_url") else f"data.{key}"] = value


_with_extra(CallbackPayload, {}, flatten=_flatten_callback)


def unstructure_details(details: VideoDetails) -> dict[str, Any]:
    """The wire shape of ``details`` (the ``response`` object nested again)."""
    wire: dict[str, Any] = converter.unstructure(details)
    url = wire.pop("videoUrl", None)
    response = {
        k.removeprefix("response."): wire.pop(k) for k in list(wire) if k.startswith("response.")
    }
    if url is not None:
        response["videoUrl"] = url
    wire["response"] = response or None
    return wire


def request_body(request: VideoRequest) -> dict[str, Any]:
    """The submit body of ``request`` (without ``callBackUrl``): written out, not generated,
    as it is made on every submit. Branding is left out when absent; the idempotency key
    is ours and never sent."""
    body = {"taskId": request.task_id, "audioId": request.audio_id}
    if request.author is not None:
        body["author"] = request.author
    if request.domain_name is not None:
        body["domainName"] = request.domain_name
    return body


converter.register_unstructure_hook(VideoRequest, request_body)
converter.register_structure_hook(
    VideoRequest,
    make_dict_structure_fn(
        VideoRequest,
        converter,
        task_id=override(rename="taskId"),
        audio_id=override(rename="audioId"),
        domain_name=override(rename="domainName"),
        idempotency_key=override(rename="idempotencyKey"),
    ),
)


def video_from_details(details: VideoDetails, *, received_at: datetime | None = None) -> MusicVideo:
    """The finished video described by ``details`` (which must carry a URL)."""
    if details.video_url is None:
        raise ValueError("details carry no video URL")
    return MusicVideo(
        task_id=details.task_id,
        video_url=details.video_url,
        completed_at=details.completed_at or received_at or utcnow(),
        # musicId is the source track (upstream), i.e. an audio id, not the music task.
        audio_id=details.audio_id or details.music_id,
    )


converter.register_unstructure_hook(
    MusicVideo,
    make_dict_unstructure_fn(MusicVideo, converter, expires_at=override(omit=True)),
)
converter.register_structure_hook(
    MusicVideo,
    make_dict_structure_fn(MusicVideo, converter, expires_at=override(omit=True)),
)
