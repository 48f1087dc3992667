"""The sandbox treats every request body as hostile: deep nesting, wrong types, huge
values, cross-site content types and path probes answer 4xx, never 5xx, and no answer
tells which files exist on the host or where they live."""

from __future__ import annotations

import importlib.util
import json
import os
import wave
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suno_mp4_sandbox import Faults, PlaceholderRenderer, RenderFailed, RenderJob, Sandbox

pytestmark = pytest.mark.anyio

GENERATE = "/api/v1/mp4/generate"
RECORD_INFO = "/api/v1/mp4/record-info"
NOWHERE = "https://callback.invalid/hook"
ADMIN_POSTS = [
    "/sandbox/tracks",
    "/sandbox/music-tasks",
    "/sandbox/stats/reset",
    "/sandbox/advance",
    "/sandbox/faults",
    "/sandbox/maintenance",
    "/sandbox/credits",
]
#: What every refused audio path answers, whatever the reason.
UNUSABLE_AUDIO = {"error": "cannot use that audio file"}


def auth(sb: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}"}


def headers_for(sb: Sandbox, path: str) -> dict[str, str]:
    """What a legitimate caller of ``path`` sends: the API key, or the admin token."""
    return auth(sb) if path.startswith("/api/") else sb.admin_headers


async def post_raw(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` as is; ``content_type=None`` sends no Content-Type at all."""
    headers = dict(headers or {})
    skip = []
    if content_type is None:
        skip.append("Content-Type")
    else:
        headers["Content-Type"] = content_type
    with anyio.fail_after(10):
        async with session.post(url, data=body, headers=headers, skip_auto_headers=skip) as r:
            return r.status, await r.read()


async def assert_still_sound(session: aiohttp.ClientSession, sb: Sandbox) -> None:
    """After a hostile request, the sandbox still registers, bills, answers and polls."""
    with anyio.fail_after(10):
        url = sb.base_url + "/sandbox/tracks"
        async with session.post(url, json={}, headers=sb.admin_headers) as r:
            assert r.status == 200, await r.text()
            track = await r.json()
        body = {"taskId": track["task_id"], "audioId": track["audio_id"], "callBackUrl": NOWHERE}
        async with session.post(sb.base_url + GENERATE, json=body, headers=auth(sb)) as r:
            assert r.status == 200
            answer = await r.json()
        assert answer["code"] == 200, answer
        url = sb.base_url + RECORD_INFO
        params = {"taskId": answer["data"]["taskId"]}
        async with session.get(url, params=params, headers=auth(sb)) as r:
            assert r.status == 200 and (await r.json())["code"] == 200
        for path in ("/sandbox/stats", "/sandbox/faults", "/sandbox/credits"):
            async with session.get(sb.base_url + path, headers=sb.admin_headers) as r:
                assert r.status == 200, await r.text()


def nested(depth: int) -> bytes:
    """A valid JSON object ``depth`` containers deep (the outer object included)."""
    return b'{"taskId": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


def write_wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return path


# 1. Deep nesting


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # over the size cap too
        b"[" * 60_000,  # under it: the parser gives up (RecursionError)
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        nested(33),
    ],
    ids=["100k-open-brackets", "60k-open-brackets", "1000-objects", "33-levels"],
)
async def test_deeply_nested_json_answers_400_never_500(
    sandbox: Sandbox, session: aiohttp.ClientSession, body: bytes
) -> None:
    status, raw = await post_raw(session, sandbox.base_url + GENERATE, body, headers=auth(sandbox))
    assert status == 200, raw[:300]
    answer = json.loads(raw)
    assert answer["code"] == 400 and answer["data"] is None, answer
    for path in ("/sandbox/tracks", "/sandbox/faults", "/sandbox/credits", "/sandbox/advance"):
        headers = sandbox.admin_headers
        status, raw = await post_raw(session, sandbox.base_url + path, body, headers=headers)
        assert status == (413 if len(body) > 65536 else 400), (path, raw[:300])
        assert "error" in json.loads(raw)
    assert not sandbox.tasks
    await assert_still_sound(session, sandbox)


async def test_nesting_up_to_the_bound_is_still_read(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    # 32 levels parse; the wrong type of taskId is then a validation error.
    url = sandbox.base_url + GENERATE
    status, raw = await post_raw(session, url, nested(32), headers=auth(sandbox))
    assert status == 200 and json.loads(raw)["code"] == 422


# 2. Cross-site requests


@pytest.mark.parametrize("path", ADMIN_POSTS)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_admin_posts_need_a_json_content_type(
    sandbox: Sandbox, session: aiohttp.ClientSession, path: str, content_type: str | None
) -> None:
    body = {
        "/sandbox/music-tasks": b'{"tracks": 3}',
        "/sandbox/advance": b'{"days": 15}',
        "/sandbox/faults": b'{"stall": 1.0}',
        "/sandbox/maintenance": b'{"on": true}',
        "/sandbox/credits": b'{"credits": 0}',
    }.get(path, b"{}")
    before = sandbox.now()
    # A cross-site form or a no-cors fetch: a body in a "simple" content type, or none.
    for payload in (body, b""):
        status, raw = await post_raw(
            session, sandbox.base_url + path, payload, content_type, sandbox.admin_headers
        )
        assert status == 415, (path, content_type, status, raw[:300])
        assert "error" in json.loads(raw)
    assert not sandbox.maintenance and sandbox.credits == 1_000_000
    assert sandbox.faults == Faults() and sandbox.now() < before + 86400
    # The same request as JSON is accepted.
    status, raw = await post_raw(
        session, sandbox.base_url + path, body, "application/json", sandbox.admin_headers
    )
    assert status == 200, raw[:300]


# 3. Audio paths


async def test_admin_track_paths_do_not_reveal_which_host_files_exist(
    sandbox: Sandbox, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("not audio at all\n")
    fake_wav = tmp_path / "fake.wav"
    fake_wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
    candidates = [
        tmp_path / "missing.mp3",
        tmp_path,
        not_audio,
        "/etc/passwd",
        "/etc/shadow",
        "/dev/null",
        "../../../../../../etc/hostname",
        "",
        "bad\x00path",
    ]
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        # Only ffmpeg tells a real WAV from one that merely starts like one.
        candidates.append(fake_wav)
    if os.geteuid() != 0:  # root reads anything
        locked = write_wav(tmp_path / "locked.wav")
        locked.chmod(0)
        candidates.append(locked)
    url = sandbox.base_url + "/sandbox/tracks"
    for path in candidates:
        with anyio.fail_after(30):
            body = {"path": str(path), "duration": 2}
            async with session.post(url, json=body, headers=sandbox.admin_headers) as r:
                assert r.status == 400, (path, await r.text())
                text = await r.text()
        assert json.loads(text) == UNUSABLE_AUDIO, (path, text)
    # A real audio file is accepted.
    track = write_wav(tmp_path / "real.wav")
    with anyio.fail_after(30):
        body = {"path": str(track)}
        async with session.post(url, json=body, headers=sandbox.admin_headers) as r:
            assert r.status == 200, await r.text()
            assert set(await r.json()) == {"task_id", "audio_id"}
    # The Python API still says precisely what is wrong, for the local developer.
    with pytest.raises(FileNotFoundError, match="no audio file at"):
        sandbox.add_track(tmp_path / "missing.mp3")


class LeakyRenderer:
    """Fails tracks titled "oserror" or "failed" with messages naming host paths."""

    async def render(self, job: RenderJob) -> Path:
        if job.title == "oserror":
            raise OSError(28, "No space left on device", str(job.out_dir / "x.mp4"))
        if job.title == "failed":
            raise RenderFailed(f"audio could not be decoded: {job.audio_path}: Invalid data")
        return await PlaceholderRenderer().render(job)


async def test_no_answer_echoes_a_host_path(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "song.wav")
    async with Sandbox(render_time=0.01, renderer=LeakyRenderer()) as sb:
        ids = {}
        for title in ("ok", "oserror", "failed"):
            task_id, audio_id = sb.add_track(audio, title=title, duration=1)
            body = {"taskId": task_id, "audioId": audio_id, "callBackUrl": NOWHERE}
            async with session.post(sb.base_url + GENERATE, json=body, headers=auth(sb)) as r:
                ids[title] = (await r.json())["data"]["taskId"]
        with anyio.fail_after(10):
            for video_task_id in ids.values():
                await sb.wait_done(video_task_id)
        texts = []
        for title, video_task_id in ids.items():
            params = {"taskId": video_task_id}
            async with session.get(sb.base_url + RECORD_INFO, params=params, headers=auth(sb)) as r:
                info = await r.text()
            admin_url = f"{sb.base_url}/sandbox/tasks/{video_task_id}"
            async with session.get(admin_url, headers=sb.admin_headers) as r:
                admin = await r.text()
            assert (json.loads(info)["data"]["errorMessage"] is None) == (title == "ok"), info
            texts += [info, admin]
        async with session.get(sb.base_url + "/sandbox/stats", headers=sb.admin_headers) as r:
            texts.append(await r.text())
        for text in texts:
            for secret in (str(sb.video_dir), str(tmp_path), str(audio)):
                assert secret not in text and secret.replace("/", "\\/") not in text, text


async def test_a_non_utf8_authorization_header_answers_401(sandbox: Sandbox) -> None:
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    request = (
        b"POST " + GENERATE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request)
            answer = b""
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(body)["code"] == 401


# 4. Wrong types, huge values


HOSTILE_FIELDS = [
    ("/sandbox/credits", b'{"credits": "x"}'),
    ("/sandbox/credits", b'{"credits": 1e400}'),
    ("/sandbox/credits", b'{"credits": 1.5}'),
    ("/sandbox/credits", b'{"credits": -1}'),
    ("/sandbox/credits", b'{"credits": null}'),
    ("/sandbox/credits", b"{}"),
    ("/sandbox/advance", b'{"days": 1e400}'),
    ("/sandbox/advance", b'{"days": 1e300}'),
    ("/sandbox/advance", b'{"hours": "NaN"}'),
    ("/sandbox/advance", b'{"seconds": NaN}'),
    ("/sandbox/advance", b'{"days": -1}'),
    ("/sandbox/advance", b'{"days": true}'),
    ("/sandbox/advance", b'{"days": ' + b"9" * 400 + b"}"),
    ("/sandbox/music-tasks", b'{"tracks": -5}'),
    ("/sandbox/music-tasks", b'{"tracks": 11}'),
    ("/sandbox/music-tasks", b'{"tracks": 1e400}'),
    ("/sandbox/music-tasks", b'{"tracks": "2"}'),
    ("/sandbox/music-tasks", b'{"tracks": 1000000000}'),
    ("/sandbox/tracks", b'{"duration": 1e308}'),
    ("/sandbox/tracks", b'{"duration": "x"}'),
    ("/sandbox/tracks", b'{"duration": -1}'),
    ("/sandbox/tracks", b'{"duration": Infinity}'),
    ("/sandbox/tracks", b'{"title": 5}'),
    ("/sandbox/tracks", b'{"title": "' + b"x" * 1000 + b'"}'),
    ("/sandbox/tracks", b'{"title": "' + b"x" * 300_000 + b'"}'),
    ("/sandbox/tracks", b'{"fail": {"x": 1}}'),
    ("/sandbox/tracks", b'{"path": 5}'),
    ("/sandbox/maintenance", b'{"on": "no"}'),
    ("/sandbox/faults", b'{"rate_limit_storm_until": 1e400}'),
    ("/sandbox/faults", b'{"slow_seconds": Infinity}'),
    ("/sandbox/faults", b'{"stall": true}'),
    ("/sandbox/faults", b'{"callback_drop": 1, "stall": 5}'),
    ("/sandbox/faults", b"[]"),
    (GENERATE, b'{"taskId": "' + b"x" * 300_000 + b'"}'),
    (GENERATE, b'{"taskId": "t", "audioId": "a", "callBackUrl": "' + b"h" * 100_000 + b'"}'),
    (GENERATE, b'{"taskId": {"a": 1}, "audioId": [], "callBackUrl": 1e400}'),
    (GENERATE, b'{"taskId": "t", "audioId": "a", "callBackUrl": NaN}'),
    (GENERATE, b"\xff\xfe{}"),
    (GENERATE, b'"just a string"'),
]


@pytest.mark.parametrize(
    ("path", "body"), HOSTILE_FIELDS, ids=[f"{p}:{b[:40]!r}" for p, b in HOSTILE_FIELDS]
)
async def test_hostile_field_values_answer_4xx_and_the_sandbox_stays_sound(
    sandbox: Sandbox, session: aiohttp.ClientSession, path: str, body: bytes
) -> None:
    headers = headers_for(sandbox, path)
    status, raw = await post_raw(session, sandbox.base_url + path, body, headers=headers)
    if path == GENERATE:
        assert status == 200, raw[:300]
        answer = json.loads(raw)
        assert answer["code"] in (400, 422) and answer["data"] is None, answer
    else:
        assert status in (400, 413, 422), (status, raw[:300])
        assert "error" in json.loads(raw)
    assert len(raw) < 4096  # no echo of a huge input
    assert sandbox.credits == 1_000_000 and not sandbox.maintenance and sandbox.faults == Faults()
    await assert_still_sound(session, sandbox)


# Fuzzing every POST route

_FIELDS = [
    *("taskId", "audioId", "callBackUrl", "author", "domainName"),
    *("path", "title", "duration", "fail", "tracks", "days", "hours", "seconds"),
    *("on", "credits", "stall", "poll_455", "slow_seconds", "rate_limit_storm_until"),
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["/etc/passwd", "/nonexistent/x.mp3", ".", "", "http://127.0.0.1:1/x"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def _encode(value: object) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as Python writes them


_deep = st.tuples(st.integers(1, 3000), st.sampled_from(["[", '{"a":'])).map(
    lambda t: (t[1] * t[0]).encode()
)
_fuzz_bodies = st.one_of(
    st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=5).map(_encode),
    _values.map(_encode),
    _deep,
    st.binary(max_size=200),
    st.just(b""),
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from([GENERATE, *ADMIN_POSTS]),
    body=_fuzz_bodies,
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/octet-stream",
            None,
        ]
    ),
)
async def test_random_bodies_never_5xx(
    sandbox: Sandbox, path: str, body: bytes, content_type: str | None
) -> None:
    # Whatever an earlier example switched on (a stall, maintenance) is undone first.
    sandbox.faults = Faults()
    sandbox.maintenance = False
    headers = headers_for(sandbox, path)
    async with aiohttp.ClientSession() as session:
        status, raw = await post_raw(session, sandbox.base_url + path, body, content_type, headers)
    assert status < 500, (status, raw[:300])
    answer: Any = json.loads(raw)
    if path == GENERATE:
        assert status == 200 and answer["code"] != 500
    else:
        assert status == 200 or "error" in answer


# 5. The admin token


@pytest.mark.parametrize(
    "token", [None, "", "wrong", "x" * 5000], ids=["none", "empty", "wrong", "huge"]
)
async def test_admin_routes_need_the_sandbox_admin_token(
    sandbox: Sandbox, session: aiohttp.ClientSession, token: str | None
) -> None:
    headers = {} if token is None else {"X-Sandbox-Token": token}
    for path in ADMIN_POSTS:
        status, raw = await post_raw(session, sandbox.base_url + path, b"{}", headers=headers)
        assert status == 401, (path, raw[:300])
        assert "X-Sandbox-Token" in json.loads(raw)["error"]
    for path in ("/sandbox/stats", "/sandbox/faults", "/sandbox/credits", "/sandbox/tasks/x"):
        async with session.get(sandbox.base_url + path, headers=headers) as r:
            assert r.status == 401 and "error" in await r.json()
    assert not sandbox.tasks and sandbox.stats.as_json() == Sandbox().stats.as_json()
    # The token is checked before the body is read: an anonymous request is refused
    # whatever it sends, and the right token opens the same route.
    status, _ = await post_raw(session, sandbox.base_url + "/sandbox/credits", b"x" * 100_000)
    assert status == 401
    await assert_still_sound(session, sandbox)


async def test_each_sandbox_draws_its_own_admin_token_unless_given() -> None:
    first, second = Sandbox(), Sandbox()
    assert first.admin_token != second.admin_token and len(first.admin_token) >= 32
    assert Sandbox(admin_token="fixed").admin_headers == {"X-Sandbox-Token": "fixed"}
    with pytest.raises(ValueError, match="admin_token"):
        Sandbox(admin_token="  ")


async def test_what_a_caller_makes_up_costs_the_sandbox_bounded_memory_and_no_500() -> None:
    import aiohttp

    async with Sandbox(render_time=0.05) as sb, aiohttp.ClientSession() as session:
        api = f"{sb.base_url}/api/v1/mp4"
        # Polls without a key, for ids nobody made: nothing is kept of them.
        for i in range(50):
            async with session.get(f"{api}/record-info", params={"taskId": f"x{i}" * 500}) as r:
                assert (await r.json())["code"] == 401
        assert len(sb.stats.polls) == 0
        # A callBackUrl past 4,096 characters is refused, not kept with the task.
        task_id, audio_id = sb.add_track()
        body = {"taskId": task_id, "audioId": audio_id}
        body["callBackUrl"] = "http://127.0.0.1:9/" + "x" * 5000
        headers = {"Authorization": f"Bearer {sb.api_key}"}
        async with session.post(f"{api}/generate", json=body, headers=headers) as r:
            answer = await r.json()
        assert answer["code"] == 422 and "callBackUrl" in answer["msg"]
        # A body that says it is compressed and is not: a 400 in the envelope.
        raw = b'{"taskId": "t", "audioId": "a", "callBackUrl": "http://127.0.0.1:9/"}'
        gz = {**headers, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with session.post(f"{api}/generate", data=raw, headers=gz) as r:
            answer = await r.json()
        assert answer["code"] == 400, answer
    assert sb.stats.submits_accepted == 0
