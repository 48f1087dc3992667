"""Models, validation and the wire converter: specifications of the data layer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suno_mp4 import (
    CallbackPayload,
    InvalidRequestError,
    MusicVideo,
    TaskStatus,
    VideoDetails,
    VideoRequest,
)
from suno_mp4._convert import (
    _DETAILS_RENAMES,
    EARLIEST,
    LATEST,
    _flatten_details,
    _parse_time,
    converter,
    extra_hooks,
    parse_time,
    structure_details,
    unstructure_details,
    video_from_details,
)
from suno_mp4._transport import dumps


def test_request_rejects_empty_ids_before_anything_is_sent() -> None:
    with pytest.raises(InvalidRequestError, match="task_id"):
        VideoRequest("", "audio")
    with pytest.raises(InvalidRequestError, match="audio_id"):
        VideoRequest("task", "   ")


def test_request_rejects_branding_over_50_characters() -> None:
    VideoRequest("t", "a", author="x" * 50, domain_name="d" * 50)
    with pytest.raises(InvalidRequestError, match="author is 51 characters"):
        VideoRequest("t", "a", author="x" * 51)
    with pytest.raises(InvalidRequestError, match="domain_name"):
        VideoRequest("t", "a", domain_name="d" * 51)


def test_empty_branding_is_no_branding_with_the_same_key() -> None:
    bare = VideoRequest("t", "a")
    empty = VideoRequest("t", "a", author="", domain_name="")
    assert (empty.author, empty.domain_name) == (None, None)
    assert empty == bare and empty.key == bare.key
    assert VideoRequest("t", "a", author="me").key != bare.key
    with pytest.raises(InvalidRequestError, match="idempotency_key"):
        VideoRequest("t", "a", idempotency_key="  ")
    with pytest.raises(InvalidRequestError, match="lone surrogate"):
        VideoRequest("t", "a", domain_name="\ud800")


def test_invalid_request_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        VideoRequest("t", "a", author=42)  # type: ignore[arg-type]


def test_request_wire_format_is_camel_case_and_omits_missing_branding() -> None:
    assert converter.unstructure(VideoRequest("t", "a")) == {"taskId": "t", "audioId": "a"}
    assert converter.unstructure(VideoRequest("t", "a", author="me", domain_name="x.io")) == {
        "taskId": "t",
        "audioId": "a",
        "author": "me",
        "domainName": "x.io",
    }


def test_both_documented_time_shapes_parse_to_the_same_utc_instant() -> None:
    from_ms = parse_time(1735690200000)
    from_text = parse_time("2025-01-01 00:10:00")
    assert from_ms == from_text == datetime(2025, 1, 1, 0, 10, tzinfo=UTC)
    assert from_ms is not None and from_ms.tzinfo is not None


def test_unreadable_times_are_none_not_a_crash() -> None:
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    assert parse_time(True) is None
    assert parse_time({"t": 1}) is None


def test_details_parse_the_documented_example() -> None:
    wire = {
        "taskId": "taskId_774b9aa0422f",
        "musicId": "audioId_0295980ec02e",
        "audioId": "e231****-****-****-****-****8cadc7dc",
        "callbackUrl": "https://api.example.com/callback",
        "musicIndex": 0,
        "completeTime": 1735661400000,
        "response": {"videoUrl": "https://example.com/videos/video_847715e66259.mp4"},
        "successFlag": "SUCCESS",
        "createTime": 1735661400000,
        "errorCode": None,
        "errorMessage": None,
    }
    details = converter.structure(wire, VideoDetails)
    assert details.status is TaskStatus.SUCCESS
    assert details.video_url == "https://example.com/videos/video_847715e66259.mp4"
    assert details.music_id == "audioId_0295980ec02e"
    assert details.completed_at == datetime(2024, 12, 31, 16, 10, tzinfo=UTC)
    assert details.extra == {}


def test_music_id_is_read_as_the_source_track_not_the_music_task() -> None:
    wire = {"taskId": "mp4_1", "musicId": "track-7", "successFlag": "SUCCESS"}
    wire["response"] = {"videoUrl": "https://example.com/v.mp4"}
    video = video_from_details(converter.structure(wire, VideoDetails))
    assert (video.audio_id, video.source_task_id) == ("track-7", None)
    wire["audioId"] = "track-8"  # audioId, when present, names the track
    assert video_from_details(converter.structure(wire, VideoDetails)).audio_id == "track-8"


def test_details_keep_unknown_fields_and_tolerate_missing_ones() -> None:
    details = converter.structure(
        {"taskId": "t1", "successFlag": "PENDING", "shinyNewField": [1, 2]}, VideoDetails
    )
    assert details.extra == {"shinyNewField": [1, 2]}
    assert details.video_url is None and details.completed_at is None


def test_unknown_status_flag_is_kept_not_final_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    details = converter.structure({"taskId": "t", "successFlag": "QUEUED_V2"}, VideoDetails)
    assert details.status == "QUEUED_V2"
    assert not details.status.is_known
    assert not details.status.is_final
    assert TaskStatus("RENDER_FAILED_V2").is_final
    assert TaskStatus("UPLOAD_ERROR").is_failure


@pytest.mark.parametrize(
    ("flag", "ok", "final"),
    [
        ("PENDING", False, False),
        ("SUCCESS", True, True),
        ("CREATE_TASK_FAILED", False, True),
        ("GENERATE_MP4_FAILED", False, True),
        ("CALLBACK_EXCEPTION", True, True),
    ],
)
def test_documented_flags(flag: str, ok: bool, final: bool) -> None:
    status = TaskStatus(flag)
    assert (status.is_ok, status.is_final, status.is_known) == (ok, final, True)


def test_callback_payload_reads_the_snake_case_body() -> None:
    payload = converter.structure(
        {
            "code": 200,
            "msg": "MP4 generated successfully.",
            "data": {"task_id": "t", "video_url": "u"},
        },
        CallbackPayload,
    )
    assert (payload.task_id, payload.video_url, payload.ok) == ("t", "u", True)


def test_music_video_expires_14_days_after_completion() -> None:
    done = datetime(2026, 1, 1, tzinfo=UTC)
    video = MusicVideo(task_id="t", video_url="u", completed_at=done)
    assert video.expires_at == done + timedelta(days=14)
    assert not video.is_expired(done + timedelta(days=13, hours=23))
    assert video.is_expired(done + timedelta(days=14))


_text = st.text(min_size=1, max_size=30)
_times = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=(d.microsecond // 1000) * 1000))
_flags = st.sampled_from([s.value for s in TaskStatus]) | st.from_regex(
    r"[A-Z_]{3,20}", fullmatch=True
)


@given(
    task_id=_text,
    flag=_flags,
    url=st.none() | _text,
    created=st.none() | _times,
    completed=st.none() | _times,
    code=st.none() | st.integers(-(2**31), 2**31),
    extra=st.dictionaries(st.from_regex(r"x[A-Za-z]{1,10}", fullmatch=True), st.integers()),
)
def test_details_round_trip_through_the_wire_format(
    task_id: str,
    flag: str,
    url: str | None,
    created: datetime | None,
    completed: datetime | None,
    code: int | None,
    extra: dict[str, int],
) -> None:
    details = VideoDetails(
        task_id=task_id,
        status=TaskStatus(flag),
        video_url=url,
        created_at=created,
        completed_at=completed,
        error_code=code,
        extra=extra,
    )
    wire = unstructure_details(details)
    back = converter.structure(wire, VideoDetails)
    assert back == details
    assert back.extra == extra


@given(seconds=st.integers(1_000_000_000, 4_000_000_000))
def test_epoch_milliseconds_and_text_agree(seconds: int) -> None:
    when = datetime.fromtimestamp(seconds, UTC)
    assert parse_time(seconds * 1000) == when
    assert parse_time(when.strftime("%Y-%m-%d %H:%M:%S")) == when


# The details structure written out for speed agrees with the one cattrs generates.

_WIRE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["SUCCESS", "PENDING", "GENERATE_MP4_FAILED", " 17 ", "2025-01-02 03:04:05"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)
_WIRE_KEYS = st.sampled_from(
    [
        "taskId",
        "successFlag",
        "videoUrl",
        "musicId",
        "audioId",
        "callbackUrl",
        "musicIndex",
        "createTime",
        "completeTime",
        "errorCode",
        "errorMessage",
        "response",
        "unknownField",
    ]
)
_RESPONSES = st.dictionaries(st.sampled_from(["videoUrl", "other"]), _WIRE_VALUES, max_size=2)


def _outcome(structure: Any, wire: dict[str, Any]) -> object:
    try:
        details = structure(wire, VideoDetails)
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        return ("refused", exc is not None)
    return (details, dict(details.extra))


@settings(max_examples=600, deadline=None)
@given(
    st.dictionaries(_WIRE_KEYS, _WIRE_VALUES, max_size=13),
    st.one_of(st.none(), _RESPONSES),
)
def test_details_written_out_agree_with_the_generated_structure(
    wire: dict[str, Any], response: dict[str, Any] | None
) -> None:
    if response is not None:
        wire["response"] = response
    generated, _ = extra_hooks(VideoDetails, _DETAILS_RENAMES, flatten=_flatten_details)
    assert _outcome(structure_details, dict(wire)) == _outcome(generated, dict(wire))


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.integers(946_684_790_000, 946_684_810_000),  # around 2000-01-01 in ms
        st.integers(7_258_118_390_000, 7_258_118_410_000),  # around 2200-01-01 in ms
        st.integers(-(2**62), 2**62),
    )
)
def test_epoch_milliseconds_read_at_once_as_by_the_general_reading(value: int) -> None:
    # parse_time reads an int inside the range in one step; it must say what the general
    # reading (every shape, then the range check) says, at the range's ends too.
    general = _parse_time(value)
    if general is not None and not EARLIEST <= general < LATEST:
        general = None
    assert parse_time(value) == general


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.dictionaries(st.text(), st.text(), max_size=6),  # a submit's body
        st.dictionaries(st.one_of(st.text(), st.integers()), _JSON, max_size=4),
        _JSON,
    )
)
def test_a_request_body_written_out_is_the_text_json_dumps_makes(value: Any) -> None:
    assert dumps(value) == json.dumps(value)
