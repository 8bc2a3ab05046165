"""flux_core under a stand-in pipeline: what the Modal endpoint answers, and when it stops the GPU.

Runs with Debian's python3-fastapi, python3-pil, python3-pytest and python3-httpx
(`python3 -m pytest -q worker/modal`); vitest runs it as part of `npm test`.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from flux_core import (
    MAX_BODY_BYTES,
    GenerateParams,
    GenerationCancelled,
    ModelUnavailable,
    create_app,
    parse_request,
    step_callback,
)


class StandIn:
    """Behaves like the diffusers pipeline as flux_app.py drives it: one step callback per
    denoising step, an RGB image of the requested size at the end."""

    def __init__(self, *, wait_for_stop: bool = False, on_step=None, fail: Exception | None = None):
        self.calls: list[GenerateParams] = []
        self.steps_run = 0
        self.started = threading.Event()
        self.wait_for_stop = wait_for_stop
        self.on_step = on_step
        self.fail = fail

    def generate(self, params, should_stop):
        self.calls.append(params)
        self.started.set()
        if self.fail:
            raise self.fail
        callback = step_callback(should_stop)
        for step in range(params.steps):
            if self.wait_for_stop:
                # A step that lasts until someone asks the pipeline to stop (10 s safety cap).
                cap = time.monotonic() + 10
                while not should_stop() and time.monotonic() < cap:
                    time.sleep(0.001)
            callback(self, step, 1000 - step, {"latents": step})
            self.steps_run += 1
            if self.on_step:
                self.on_step(step)
        return Image.new("RGB", (params.width, params.height), (params.seed % 256, 100, 150))


def client_for(pipeline, **kwargs) -> TestClient:
    return TestClient(create_app(lambda: pipeline, **kwargs))


def test_answers_a_png_of_the_requested_size_with_the_seed():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/", json={"prompt": " a fox ", "width": 320, "height": 192, "seed": 7, "steps": 3}
    )
    assert res.status_code == 200
    assert res.headers["content-type"] == "image/png"
    assert res.headers["x-seed"] == "7"
    img = Image.open(io.BytesIO(res.content))
    assert (img.format, img.size) == ("PNG", (320, 192))
    assert img.getpixel((0, 0)) == (7, 100, 150)
    assert pipe.calls == [GenerateParams("a fox", 320, 192, 7, 3, None)]
    assert pipe.steps_run == 3


def test_defaults_for_what_the_request_leaves_out():
    pipe = StandIn()
    res = client_for(pipe).post("/", json={"prompt": "a fox"})
    assert res.status_code == 200
    assert pipe.calls == [GenerateParams("a fox", 1024, 1024, 0, 4, None)]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("not json", "JSON"),
        ("[1, 2]", "object"),
        ("{}", "prompt"),
        ('{"prompt": "   "}', "prompt"),
        (json.dumps({"prompt": "x" * 1001}), "1000"),
        ('{"prompt": "a", "width": 100}', "width"),
        ('{"prompt": "a", "width": 4096}', "width"),
        ('{"prompt": "a", "height": 48}', "height"),
        ('{"prompt": "a", "width": "1024"}', "width"),
        ('{"prompt": "a", "width": true}', "width"),
        ('{"prompt": "a", "width": 1024.5}', "width"),
        ('{"prompt": "a", "seed": -1}', "seed"),
        ('{"prompt": "a", "seed": 4294967296}', "seed"),
        ('{"prompt": "a", "steps": 0}', "steps"),
        ('{"prompt": "a", "steps": 51}', "steps"),
        ('{"prompt": "a", "deadline": "soon"}', "deadline"),
        ('{"prompt": "a", "deadline": NaN}', "deadline"),
        ('{"prompt": "a", "deadline": -5}', "deadline"),
        (b'{"prompt": "\xff"}', "JSON"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else "long-or-binary",
)
def test_refuses_malformed_requests_with_422_naming_the_problem(body, names):
    pipe = StandIn()
    res = client_for(pipe).post(
        "/", content=body, headers={"content-type": "application/json"}
    )
    assert res.status_code == 422
    assert names in res.json()["detail"]
    assert pipe.calls == []


def test_refuses_an_oversized_body_with_413():
    pipe = StandIn()
    body = json.dumps({"prompt": "a", "pad": "x" * MAX_BODY_BYTES}).encode()
    res = client_for(pipe).post("/", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 413
    assert pipe.calls == []


def test_missing_weights_answer_503_with_the_command_that_fills_the_volume():
    def get_pipeline():
        raise ModelUnavailable("weights missing: run `modal run flux_app.py::download` once")

    res = TestClient(create_app(get_pipeline)).post("/", json={"prompt": "a fox"})
    assert res.status_code == 503
    assert "::download" in res.json()["detail"]


def test_a_deadline_already_past_starts_no_generation():
    pipe = StandIn()
    res = client_for(pipe, clock=lambda: 1_000.0).post(
        "/", json={"prompt": "a fox", "deadline": 999.5}
    )
    assert res.status_code == 504
    assert pipe.calls == []


def test_the_pipeline_stops_at_the_next_step_once_the_deadline_passes():
    now = [1_000.0]

    def advance(step):
        if step == 0:
            now[0] = 1_100.0  # the caller's deadline (1 050) passes during the first step

    pipe = StandIn(on_step=advance)
    res = client_for(pipe, clock=lambda: now[0]).post(
        "/", json={"prompt": "a fox", "steps": 4, "deadline": 1_050}
    )
    assert res.status_code == 504
    assert pipe.steps_run == 1  # of 4: the remaining steps never ran


def test_a_gpu_failure_is_answered_500_not_a_crash():
    pipe = StandIn(fail=RuntimeError("CUDA out of memory"))
    res = client_for(pipe).post("/", json={"prompt": "a fox"})
    assert res.status_code == 500
    assert res.json() == {"detail": "generation failed: RuntimeError"}


def test_step_callback_passes_the_tensors_through_until_told_to_stop():
    stop = [False]
    callback = step_callback(lambda: stop[0])
    kwargs = {"latents": object()}
    assert callback(None, 0, 999, kwargs) is kwargs
    stop[0] = True
    with pytest.raises(GenerationCancelled):
        callback(None, 1, 998, kwargs)


def test_a_client_that_disconnects_stops_the_pipeline():
    """Driven at the ASGI level, as Modal's web layer drives the app: the request, then an
    http.disconnect once the client has gone (here: once generation has started)."""
    pipe = StandIn(wait_for_stop=True)
    app = create_app(lambda: pipe, disconnect_poll_seconds=0.005)
    body = json.dumps({"prompt": "a fox", "steps": 4}).encode()
    sent: list[dict] = []
    first = [True]

    async def receive():
        if first[0]:
            first[0] = False
            return {"type": "http.request", "body": body, "more_body": False}
        if pipe.started.is_set():
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # cancelled by Starlette's non-blocking disconnect check
        raise AssertionError("unreachable")

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=20))
    assert pipe.started.is_set()
    assert pipe.steps_run == 0  # the first step never finished: the GPU was let go
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 504


def test_parse_request_keeps_an_integer_deadline_as_seconds():
    assert parse_request({"prompt": "a", "deadline": 1_700_000_000}).deadline == 1_700_000_000.0
