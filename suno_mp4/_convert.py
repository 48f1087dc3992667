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

from ._models import CallbackPayload, MusicVideo, TaskStatus, VideoDetails, VideoRequest, utcnow
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


def parse_time(value: object, _type: object = None) -> datetime | None:
    """Both documented time shapes: epoch milliseconds and ``"YYYY-MM-DD HH:MM:SS"`` (UTC).

    Epoch seconds are accepted too (a value too small to be milliseconds). Anything else,
    and any time before 2000 or after 2200, is ``None``: a time the SDK cannot read must
    not break the parse of a whole answer.
    """
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
        if _NUMBER.fullmatch(text):
            value = float(text)
        elif _STRING_TIME.match(text):
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        else:
            return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _time_ms(value: datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


def _lenient_int(value: object, _type: object = None) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _lenient_str(value: object, _type: object = None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _status(value: object, _type: object = None) -> TaskStatus:
    if isinstance(value, TaskStatus):
        return value
    if isinstance(value, str) and value:
        return TaskStatus(printable(value.strip(), 64))  # an unknown flag is kept: bound it
    return TaskStatus.PENDING


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


def _with_extra(
    cls: type[T], renames: Mapping[str, str], *, flatten: Callable[[dict[str, Any]], None] | None
) -> None:
    """Register camelCase hooks for ``cls`` that keep unknown wire keys in ``extra``."""
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

    converter.register_structure_hook(cls, structure_hook)
    converter.register_unstructure_hook(cls, unstructure_hook)


def _flatten_details(wire: dict[str, Any]) -> None:
    # The URL sits in a nested object on the wire: {"response": {"videoUrl": ...}}.
    response = wire.pop("response", None)
    if isinstance(response, Mapping):
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

_with_extra(VideoDetails, _DETAILS_RENAMES, flatten=_flatten_details)


def _flatten_callback(wire: dict[str, Any]) -> None:
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
