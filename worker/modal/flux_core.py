"""The part of the Flux endpoint that needs no GPU: request validation, the pipeline protocol,
PNG encoding and the FastAPI app. `flux_app.py` wires it to Modal, torch and diffusers; the
tests (`test_flux_core.py`) run it here with a stand-in pipeline.

Contract (imagine's generator contract, see README "Generators"):

POST / JSON {"prompt", "width"?, "height"?, "seed"?, "steps"?, "deadline"?}
  -> 200 image/png, header X-Seed
  -> 413 body over MAX_BODY_BYTES; 422 anything malformed (detail says what)
  -> 503 the model cannot serve (weights missing: detail says which command fills the Volume)
  -> 504 the caller's deadline passed (before or during generation; no GPU work is wasted)

`deadline` is a Unix time in seconds: when the caller stops waiting. The pipeline is asked to
stop at its next step once the deadline has passed or the client has disconnected.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

log = logging.getLogger("imagine.flux")

MAX_PROMPT_CHARS = 1000
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_STEPS = 50
MAX_SEED = 2**32 - 1
MAX_BODY_BYTES = 64 * 1024
DEFAULT_SIDE = 1024
DEFAULT_STEPS = 4


class RequestError(Exception):
    """A request the endpoint refuses; `status` is the HTTP status, the message its detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ModelUnavailable(Exception):
    """The model cannot serve (e.g. its weights are not on the Volume); the message says why."""


class GenerationCancelled(Exception):
    """Raised inside the pipeline (from its step callback) once the caller has gone."""


@dataclass(frozen=True)
class GenerateParams:
    """One validated request."""

    prompt: str
    width: int
    height: int
    seed: int
    steps: int
    deadline: float | None = None


class Image(Protocol):
    """What a pipeline returns: anything PIL-like that can save itself as PNG."""

    def save(self, fp: Any, format: str | None = None) -> None: ...  # noqa: A002


class Pipeline(Protocol):
    """Makes one image. Must call `should_stop()` between denoising steps (see `step_callback`)
    and raise `GenerationCancelled` when it returns True."""

    def generate(self, params: GenerateParams, should_stop: Callable[[], bool]) -> Image: ...


def _integer(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    # JSON true/false are ints in Python; 1.5 or "1024" are not integers either.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(422, f"{name} must be an integer")
    return value


def parse_request(body: Any) -> GenerateParams:
    """Validate a decoded JSON body; raises `RequestError(422, ...)` naming what is wrong."""
    if not isinstance(body, dict):
        raise RequestError(422, "body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(422, "prompt must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(422, f"prompt must be at most {MAX_PROMPT_CHARS} characters")
    width = _integer(body, "width", DEFAULT_SIDE)
    height = _integer(body, "height", DEFAULT_SIDE)
    seed = _integer(body, "seed", 0)
    steps = _integer(body, "steps", DEFAULT_STEPS)
    for name, side in (("width", width), ("height", height)):
        if not MIN_SIDE <= side <= MAX_SIDE or side % 16:
            raise RequestError(
                422, f"{name} must be {MIN_SIDE}-{MAX_SIDE} and a multiple of 16 (got {side})"
            )
    if not 0 <= seed <= MAX_SEED:
        raise RequestError(422, f"seed must be 0-{MAX_SEED}")
    if not 1 <= steps <= MAX_STEPS:
        raise RequestError(422, f"steps must be 1-{MAX_STEPS}")
    deadline = body.get("deadline")
    if deadline is not None:
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not math.isfinite(deadline)
            or deadline <= 0
        ):
            raise RequestError(422, "deadline must be a Unix time in seconds")
        deadline = float(deadline)
    return GenerateParams(prompt.strip(), width, height, seed, steps, deadline)


def step_callback(should_stop: Callable[[], bool]) -> Callable[..., dict[str, Any]]:
    """A diffusers `callback_on_step_end` that stops the pipeline once `should_stop()` is True:
    raising leaves the denoising loop at once, so the GPU is free for the next request."""

    def on_step_end(
        _pipe: Any, _step: int, _timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if should_stop():
            raise GenerationCancelled("the caller has gone")
        return callback_kwargs

    return on_step_end


def encode_png(image: Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def create_app(
    get_pipeline: Callable[[], Pipeline],
    *,
    clock: Callable[[], float] = time.time,
    disconnect_poll_seconds: float = 0.25,
) -> FastAPI:
    """The endpoint. `get_pipeline()` returns the loaded pipeline or raises `ModelUnavailable`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/")
    async def generate(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(413, f"body must be at most {MAX_BODY_BYTES} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return _error(413, f"body must be at most {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(422, "body must be JSON")
        try:
            params = parse_request(body)
        except RequestError as err:
            return _error(err.status, err.detail)
        try:
            pipeline = get_pipeline()
        except ModelUnavailable as err:
            return _error(503, str(err))
        if params.deadline is not None and clock() >= params.deadline:
            return _error(504, "the caller's deadline passed before generation started")

        gone = threading.Event()

        def should_stop() -> bool:
            return gone.is_set() or (params.deadline is not None and clock() >= params.deadline)

        def run() -> bytes:
            return encode_png(pipeline.generate(params, should_stop))

        # The pipeline blocks, so it runs in a thread; meanwhile this task notices a client
        # that went away (ASGI http.disconnect) and tells the pipeline to stop.
        work = asyncio.ensure_future(asyncio.to_thread(run))
        while not work.done():
            await asyncio.wait({work}, timeout=disconnect_poll_seconds)
            if not work.done() and await request.is_disconnected():
                gone.set()
        try:
            png = work.result()
        except GenerationCancelled:
            return _error(504, "stopped: the caller's deadline passed or it disconnected")
        except Exception as err:  # a GPU failure (out of memory, ...): logged, answered 500
            log.exception("generation failed")
            return _error(500, f"generation failed: {type(err).__name__}")
        return Response(content=png, media_type="image/png", headers={"X-Seed": str(params.seed)})

    return app
