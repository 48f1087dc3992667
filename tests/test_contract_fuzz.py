"""The sandbox against the OpenAPI document of the contract (``suno_mp4_sandbox/openapi.yaml``,
written from the upstream docs), fuzzed by schemathesis: no 5xx, every answer conforms to
the document (status, content type, headers, body), for valid and invalid requests, one by
one and in generate -> record-info sequences (the document's OpenAPI link).

The sandbox runs in a process of its own on a free loopback port, as a user would run it.
``SUNO_MP4_SCHEMA_EXAMPLES`` sets the cases per run (``make test``: 100; ``make chaos``:
thousands)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import hypothesis
import jsonschema_rs
import pytest
import schemathesis
import suno_mp4_sandbox
import yaml
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from suno_mp4_sandbox import Sandbox

OPENAPI = Path(suno_mp4_sandbox.__file__).parent / "openapi.yaml"
EXAMPLES = int(os.environ.get("SUNO_MP4_SCHEMA_EXAMPLES", "100"))
GENERATE = "/api/v1/mp4/generate"

#: What every answer is checked for, whatever the dialect.
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Only where errors travel in the HTTP status can HTTP say "refused": in the seed's
#: convention an invalid request or a missing key is an HTTP 200 carrying the error code.
STATUS_CHECKS: list[Callable[..., Any]] = [ignored_auth, negative_data_rejection]


@attrs.frozen
class Served:
    """A sandbox process: where it listens, its key, and tracks it knows."""

    provider: str
    base_url: str
    api_key: str
    tracks: list[tuple[str, str]]

    @property
    def checks(self) -> list[Callable[..., Any]]:
        return CHECKS + (STATUS_CHECKS if self.provider == "alt-reseller" else [])

    def with_real_track(self, case: Case, real: bool) -> Case:
        """Point a generate request at a track the sandbox knows, so fuzzing reaches the
        success path and record-info finds tasks (random ids only ever find 404)."""
        positive = case.meta is None or case.meta.generation.mode.is_positive
        # A negative case stays as generated: a real track could make it valid.
        if real and positive and case.path == GENERATE and isinstance(case.body, dict):
            task_id, audio_id = self.tracks[len(str(case.body)) % len(self.tracks)]
            case.body = {**case.body, "taskId": task_id, "audioId": audio_id}
        return case


@pytest.fixture(scope="module", params=["apikley", "alt-reseller"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    provider = request.param
    command = [sys.executable, "-m", "suno_mp4_sandbox", "--port", "0", "--no-render"]
    command += ["--render-time", "0", "--seed", "1", "--tracks", "8", "--provider", provider]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+) api key (\S+)", first)
        assert match, first
        tracks = []
        line = proc.stdout.readline()
        for _ in range(10):  # other lines (the dashboard's address) come before the tracks
            if line.startswith("track:"):
                break
            line = proc.stdout.readline()
        while line.startswith("track:"):
            found = re.search(r"taskId=(\S+) audioId=(\S+)", line)
            assert found, line
            tracks.append((found.group(1), found.group(2)))
            line = proc.stdout.readline()
        assert tracks, "the sandbox listed no tracks"
        yield Served(provider, match.group(1), match.group(2), tracks)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


#: How the other reseller refuses invalid data: its own codes, as HTTP statuses (413 is
#: its "too long"), which schemathesis's default list of refusals does not hold.
ALT_REFUSALS = ["400", "401", "404", "409", "413", "422"]


def load_schema(served: Served) -> Any:
    schema = schemathesis.openapi.from_path(OPENAPI)
    schema.config.update(
        base_url=served.base_url, headers={"Authorization": f"Bearer {served.api_key}"}
    )
    schema.config.checks.negative_data_rejection.expected_statuses = ALT_REFUSALS
    return schema


def test_the_document_is_valid_openapi_with_both_endpoints_and_the_callback() -> None:
    document = yaml.safe_load(OPENAPI.read_text())
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {GENERATE, "/api/v1/mp4/record-info"}
    generate = document["paths"][GENERATE]["post"]
    assert "onMp4Generated" in generate["callbacks"]
    assert generate["responses"]["200"]["links"]  # generate -> record-info
    assert document["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    load_schema(Served("apikley", "http://127.0.0.1:1", "k", [])).validate()


@pytest.mark.slow
def test_fuzzed_requests_never_5xx_and_every_answer_conforms(served: Served) -> None:
    schema = load_schema(served)
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE
    )
    ran: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @given(case=cases, real=st.booleans())
    def run(case: Case, real: bool) -> None:
        case = served.with_real_track(case, real)
        response = case.call(timeout=10)
        ran.append(response.status_code)
        case.validate_response(response, checks=served.checks)

    run()
    print(f"\nschemathesis {served.provider}: {len(ran)} cases, statuses {sorted(set(ran))}")
    assert len(ran) >= min(EXAMPLES, 50)


@pytest.mark.slow
def test_generate_then_record_info_sequences_conform(served: Served) -> None:
    schema = load_schema(served)
    ran: list[str] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case) -> None:
            # Decided by the case alone: Hypothesis replays a sequence and expects the
            # same draws, so nothing may depend on how many calls came before.
            served.with_real_track(case, real=len(str(case.body)) % 2 == 0)

        def after_call(self, response: Any, case: Case) -> None:
            super().after_call(response, case)
            ran.append(f"{case.method} {case.path} {response.status_code}")

        def validate_response(
            self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=served.checks)

    Workflow.run(
        settings=settings(
            max_examples=max(10, EXAMPLES // 5),
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(f"\nschemathesis stateful {served.provider}: {len(ran)} calls")
    # The link was followed: a task made by generate was read back.
    assert any(call.startswith("GET") and call.endswith(" 200") for call in ran), ran[:20]


@pytest.mark.anyio
async def test_the_sandboxs_callbacks_conform_to_the_documents_callback_schema() -> None:
    document = yaml.safe_load(OPENAPI.read_text())
    callback = document["paths"][GENERATE]["post"]["callbacks"]["onMp4Generated"]
    content = callback["{$request.body#/callBackUrl}"]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/CallbackBody"}
    validator = jsonschema_rs.Draft202012Validator(
        document["components"]["schemas"]["CallbackBody"]
    )
    send, received = anyio.create_memory_object_stream[Any](10)

    async def receive(request: web.Request) -> web.Response:
        send.send_nowait(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        async with Sandbox(render_time=0, render=False) as sb, aiohttp.ClientSession() as http:
            for track in (sb.add_track(), sb.add_track(fail="audio could not be decoded")):
                body = {"taskId": track[0], "audioId": track[1], "callBackUrl": hook}
                headers = {"Authorization": f"Bearer {sb.api_key}"}
                async with http.post(sb.base_url + GENERATE, json=body, headers=headers) as r:
                    assert (await r.json())["code"] == 200
            with anyio.fail_after(10):
                bodies = [await received.receive() for _ in range(2)]
    finally:
        await runner.cleanup()
        send.close()
        received.close()
    assert sorted(b["code"] for b in bodies) == [200, 500]
    for body in bodies:
        validator.validate(body)


@pytest.mark.anyio
async def test_the_sandbox_serves_its_openapi_document() -> None:
    async with Sandbox(render=False) as sb, aiohttp.ClientSession() as http:
        async with http.get(sb.base_url + "/openapi.yaml") as resp:
            assert resp.status == 200 and resp.content_type == "application/yaml"
            assert await resp.read() == OPENAPI.read_bytes()
