"""The part of the Flux endpoint that needs no GPU: request validation, the per-image seeds, the
input image (decoded, fitted to the job's size), the step callback (progress, previews, stop),
encoding and the FastAPI app. `flux_app.py` wires it to Modal, torch and diffusers; the tests
(`test_flux_core.py`) run it here with a stand-in pipeline.

Contract (imagine's generator contract, README "The generator contract"):

POST / JSON {"task"?: "generate" | "vary" | "upscale", "prompt", "width"?, "height"?, "steps"?,
             "count"?, "seeds"?, "seed"?, "strength"?, "image"?: base64, "image_type"?,
             "deadline"?, "preview"?}
  Accept: application/x-ndjson -> 200 NDJSON: {"type":"progress","step":i,"steps":n,"preview"?}
                                  per denoising step, then {"type":"image","index","seed",
                                  "content_type","data"} per image (or {"type":"error",...})
  otherwise, one image         -> 200 image/png, header X-Seed
  otherwise, several images    -> 200 application/json {"images": [{"image","seed",...}, ...]}
  -> 413 body or input image too big; 422 anything malformed (the message says what)
  -> 503 the model cannot serve (weights missing: the message says which command fills the Volume)
  -> 504 the caller's deadline passed (before or during generation; no GPU work is wasted)
Errors are JSON {"error": {"code", "message"}, "detail": message} (`detail` as FastAPI has it).

`deadline` is a Unix time in seconds: when the caller stops waiting. The pipeline is asked to
stop at its next step once the deadline has passed or the client has disconnected.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image as PILImage
from PIL import ImageOps

log = logging.getLogger("imagine.flux")

TASKS = ("generate", "vary", "upscale")
MAX_PROMPT_CHARS = 1000
MIN_SIDE = 64
# Every output, an upscale's included: Flux is trained up to about 2 megapixels and img2img is
# not tiled here, so a bigger upscale is refused rather than run badly or out of GPU memory.
MAX_SIDE = 2048
MAX_COUNT = 4
MAX_STEPS = 50
MAX_SEED = 2**32 - 1
# The input image of a vary or upscale, decoded from base64; and its pixels (checked from the
# header, before decoding, so a small file that claims a huge canvas costs nothing).
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
INPUT_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# JSON fields and base64 of the largest input image.
MAX_BODY_BYTES = 64 * 1024 + (MAX_IMAGE_BYTES + 2) // 3 * 4
DEFAULT_SIDE = 1024
DEFAULT_STEPS = 4
# imagine's "strong" vary; an upscale adds detail over the enlarged input at this strength.
DEFAULT_VARY_STRENGTH = 0.75
UPSCALE_STRENGTH = 0.3
UPSCALE_FACTOR = 2
PROGRESS_STREAM_TYPE = "application/x-ndjson"
PREVIEW_MAX_SIDE = 64

# A least-squares fit from Flux's 16 latent channels (as the denoising loop holds them: shifted
# and scaled) to RGB in -1..1; the fit ComfyUI and InvokeAI use for their Flux previews.
FLUX_LATENT_RGB_FACTORS = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
FLUX_LATENT_RGB_BIAS = (-0.0329, -0.0718, -0.0851)
LATENT_CHANNELS = 16


class RequestError(Exception):
    """A request the endpoint refuses; `status` is the HTTP status, the message its detail."""

    def __init__(self, status: int, detail: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code


class ModelUnavailable(Exception):
    """The model cannot serve (e.g. its weights are not on the Volume); the message says why."""


class GenerationCancelled(Exception):
    """Raised inside the pipeline (from its step callback) once the caller has gone."""


@dataclass(frozen=True)
class GenerateParams:
    """One validated request. `image` (vary, upscale) is already fitted to width×height."""

    task: str
    prompt: str
    width: int
    height: int
    seeds: tuple[int, ...]
    steps: int
    strength: float | None = None
    image: PILImage.Image | None = field(default=None, compare=False, repr=False)
    deadline: float | None = None
    preview: bool = True


class Image(Protocol):
    """What a pipeline returns: anything PIL-like that can save itself as PNG."""

    size: tuple[int, int]

    def save(self, fp: Any, format: str | None = None) -> None: ...  # noqa: A002


StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


class Pipeline(Protocol):
    """The GPU seam. `run` makes `len(params.seeds)` images in ONE batched call, image i from a
    generator seeded with `params.seeds[i]` alone (so a call of just that seed makes it again):
    text to image when `params.image` is None, else image to image from it at
    `params.strength`. It passes `callback` as diffusers' `callback_on_step_end` (which raises
    `GenerationCancelled` to stop) and returns the images in the order of the seeds.
    `read_tokens(latents, indices)` gives the packed latent rows (64 floats each) of the first
    image at those token indices, for previews."""

    def run(self, params: GenerateParams, callback: StepCallback) -> Sequence[Image]: ...

    def read_tokens(self, latents: Any, indices: Sequence[int]) -> list[list[float]]: ...


def _integer(body: dict[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    # JSON true/false are ints in Python; 1.5 or "1024" are not integers either.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(422, f"{name} must be an integer")
    return value


def _seed(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise RequestError(422, f"{name} must be an integer from 0 to {MAX_SEED}")
    return value


def image_seeds(seed: int, count: int) -> tuple[int, ...]:
    """The seeds of a job's images, as imagine numbers them: (seed + i) mod 2^32."""
    return tuple((seed + i) % 2**32 for i in range(count))


def _seeds(body: dict[str, Any]) -> tuple[int, ...]:
    count = _integer(body, "count", None)
    if count is not None and not 1 <= count <= MAX_COUNT:
        raise RequestError(422, f"count must be from 1 to {MAX_COUNT} (got {count})")
    seed = None if body.get("seed") is None else _seed(body["seed"], "seed")
    listed = body.get("seeds")
    if listed is None:
        return image_seeds(seed or 0, count or 1)
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_COUNT:
        raise RequestError(422, f"seeds must be a list of 1 to {MAX_COUNT} seeds")
    seeds = tuple(_seed(s, "each of seeds") for s in listed)
    if count is not None and count != len(seeds):
        raise RequestError(422, f"count ({count}) must be the number of seeds ({len(seeds)})")
    if seed is not None and seed != seeds[0]:
        raise RequestError(422, "seed, when given with seeds, must be seeds[0]")
    return seeds


def decode_image(data: Any) -> PILImage.Image:
    """The input image of a vary or upscale from base64: PNG, JPEG or WebP, within the byte and
    pixel caps, decoded in full (a truncated file is refused here, not on the GPU), upright, RGB."""
    if not isinstance(data, str) or not data:
        raise RequestError(422, "image must be a base64 string (a PNG, JPEG or WebP image)")
    if len(data) > (MAX_IMAGE_BYTES + 2) // 3 * 4:
        raise RequestError(413, f"image must be at most {MAX_IMAGE_BYTES} bytes", "TOO_LARGE")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, "image is not valid base64") from None
    try:
        img = PILImage.open(io.BytesIO(raw))
    except (OSError, ValueError, PILImage.DecompressionBombError):
        raise RequestError(422, "image is not an image (PNG, JPEG or WebP)") from None
    if img.format not in INPUT_FORMATS:
        raise RequestError(422, f"image must be PNG, JPEG or WebP, not {img.format}")
    width, height = img.size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        raise RequestError(
            413, f"image is {width}x{height}; at most {MAX_IMAGE_PIXELS} pixels", "TOO_LARGE"
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError):
        raise RequestError(422, "image does not decode (truncated or corrupt)") from None


def fit_image(img: PILImage.Image, width: int, height: int) -> PILImage.Image:
    """The input resized to cover width×height (Lanczos) and centre-cropped to it. For an
    upscale the input is half the size, so this is the 2x Lanczos enlargement img2img starts
    from."""
    if img.size == (width, height):
        return img
    return ImageOps.fit(img, (width, height), method=PILImage.Resampling.LANCZOS)


def _strength(body: dict[str, Any], default: float) -> float:
    value = body.get("strength", default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise RequestError(422, "strength must be a number above 0 and at most 1")
    return float(value)


def _side(name: str, side: int) -> int:
    if not MIN_SIDE <= side <= MAX_SIDE or side % 16:
        raise RequestError(
            422, f"{name} must be {MIN_SIDE}-{MAX_SIDE} and a multiple of 16 (got {side})"
        )
    return side


def parse_request(body: Any) -> GenerateParams:
    """Validate a decoded JSON body; raises `RequestError` (422, or 413 for a too-big input)
    naming what is wrong. Decodes and fits the input image, so it may take a moment."""
    if not isinstance(body, dict):
        raise RequestError(422, "body must be a JSON object")
    task = body.get("task", "generate")
    if task not in TASKS:
        raise RequestError(422, f"task must be one of {', '.join(TASKS)}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError(422, "prompt must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(422, f"prompt must be at most {MAX_PROMPT_CHARS} characters")
    steps = _integer(body, "steps", DEFAULT_STEPS)
    if not 1 <= steps <= MAX_STEPS:
        raise RequestError(422, f"steps must be 1-{MAX_STEPS}")
    seeds = _seeds(body)
    preview = body.get("preview", True)
    if not isinstance(preview, bool):
        raise RequestError(422, "preview must be true or false")
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

    if task == "generate":
        for name in ("image", "strength"):
            if body.get(name) is not None:
                raise RequestError(422, f"{name} applies to a vary or an upscale only")
        width = _side("width", _integer(body, "width", DEFAULT_SIDE))
        height = _side("height", _integer(body, "height", DEFAULT_SIDE))
        return GenerateParams(
            task, prompt.strip(), width, height, seeds, steps, None, None, deadline, preview
        )

    if body.get("image") is None:
        raise RequestError(422, f"a {task} needs an input image (image: base64)")
    if task == "upscale" and len(seeds) != 1:
        raise RequestError(422, "an upscale makes one image: count must be 1")
    strength = _strength(body, DEFAULT_VARY_STRENGTH if task == "vary" else UPSCALE_STRENGTH)
    # Sizes are checked before the image is decoded: a wrong size costs no decode.
    width = _integer(body, "width", None)
    height = _integer(body, "height", None)
    if width is not None:
        _side("width", width)
    if height is not None:
        _side("height", height)
    source = decode_image(body["image"])
    if task == "upscale":
        width = width if width is not None else source.width * UPSCALE_FACTOR
        height = height if height is not None else source.height * UPSCALE_FACTOR
        if width > MAX_SIDE or height > MAX_SIDE:
            raise RequestError(
                422,
                f"an upscale to {width}x{height} is over this endpoint's {MAX_SIDE}-pixel side "
                "(Flux img2img is not tiled here); upscale an image of at most "
                f"{MAX_SIDE // UPSCALE_FACTOR} a side",
            )
    else:
        width = width if width is not None else source.width
        height = height if height is not None else source.height
    _side("width", width)
    _side("height", height)
    image = fit_image(source, width, height)
    return GenerateParams(
        task, prompt.strip(), width, height, seeds, steps, strength, image, deadline, preview
    )


def denoising_steps(steps: int, strength: float | None) -> int:
    """How many steps the pipeline runs: all of them for text to image; for image to image the
    last `steps * strength` of them, as diffusers' Flux img2img `get_timesteps` counts."""
    if strength is None:
        return steps
    return steps - int(max(steps - min(steps * strength, steps), 0))


def preview_tokens(width: int, height: int) -> tuple[list[int], int, int]:
    """Which packed latent tokens a preview reads, and its size: Flux packs 2x2 latent pixels
    (16x16 image pixels) into each token; one preview pixel per token, every `stride`-th token
    so that neither side is over PREVIEW_MAX_SIDE."""
    cols, rows = width // 16, height // 16
    stride = max(1, math.ceil(max(cols, rows) / PREVIEW_MAX_SIDE))
    picked_rows = range(0, rows, stride)
    picked_cols = range(0, cols, stride)
    indices = [r * cols + c for r in picked_rows for c in picked_cols]
    return indices, len(picked_cols), len(picked_rows)


def latent_preview(rows: Sequence[Sequence[float]], width: int, height: int) -> bytes:
    """A small JPEG from packed latent rows (row-major, `width`×`height` of them): each row is
    one token, 64 values laid out as diffusers' `_pack_latents` does (channel, dy, dx); the 2x2
    sub-pixels are averaged and the 16 channels projected to RGB with the linear fit above."""
    if len(rows) != width * height:
        raise ValueError(f"{len(rows)} latent rows for a {width}x{height} preview")
    pixels = bytearray()
    bias_r, bias_g, bias_b = FLUX_LATENT_RGB_BIAS
    for row in rows:
        r, g, b = bias_r, bias_g, bias_b
        for c, (fr, fg, fb) in enumerate(FLUX_LATENT_RGB_FACTORS):
            v = (row[4 * c] + row[4 * c + 1] + row[4 * c + 2] + row[4 * c + 3]) * 0.25
            r += v * fr
            g += v * fg
            b += v * fb
        # -1..1 to 0..255
        pixels += bytes(max(0, min(255, int((x + 1) * 127.5))) for x in (r, g, b))
    img = PILImage.frombytes("RGB", (width, height), bytes(pixels))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


def step_callback(
    should_stop: Callable[[], bool],
    *,
    total_steps: int | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    preview: Callable[[Any], bytes | None] | None = None,
) -> StepCallback:
    """A diffusers `callback_on_step_end(pipe, step, timestep, callback_kwargs)`: reports step
    i+1 of n (n from the pipeline's `num_timesteps`, else `total_steps`) with an optional
    preview of `callback_kwargs["latents"]`, and stops the pipeline once `should_stop()` is
    True: raising leaves the denoising loop at once (no VAE decode of a half-made image), so the
    GPU is free for the next request."""

    def on_step_end(
        pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if should_stop():
            raise GenerationCancelled("the caller has gone")
        if on_progress is not None:
            steps = getattr(pipe, "num_timesteps", None)
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                steps = total_steps or step + 1
            event: dict[str, Any] = {"type": "progress", "step": step + 1, "steps": steps}
            if preview is not None and "latents" in callback_kwargs:
                try:
                    jpeg = preview(callback_kwargs["latents"])
                except Exception:  # a preview is a courtesy: never the reason a job fails
                    log.warning("preview failed", exc_info=True)
                    jpeg = None
                if jpeg:
                    event["preview"] = base64.b64encode(jpeg).decode("ascii")
            on_progress(event)
        return callback_kwargs

    # For a pipeline that checks between phases of its own (the stand-in in the tests does).
    on_step_end.should_stop = should_stop  # type: ignore[attr-defined]
    return on_step_end


def encode_png(image: Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _error(status: int, detail: str, code: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"code": code, "message": detail}, "detail": detail}
    )


def accepts_stream(accept: str | None) -> bool:
    """Whether an Accept header offers the NDJSON progress stream (and not with q=0)."""
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media.lower() != PROGRESS_STREAM_TYPE:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


STOPPED = "stopped: the caller's deadline passed or it disconnected"


def create_app(
    get_pipeline: Callable[[], Pipeline],
    *,
    clock: Callable[[], float] = time.time,
    disconnect_poll_seconds: float = 0.25,
    previews: bool = True,
) -> FastAPI:
    """The endpoint. `get_pipeline()` returns the loaded pipeline or raises `ModelUnavailable`.
    `previews=False` leaves previews out of progress lines whatever a request asks."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # One generation at a time on the GPU, should the platform ever send two at once.
    gpu = threading.Lock()

    @app.post("/")
    async def generate(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(413, f"body must be at most {MAX_BODY_BYTES} bytes", "TOO_LARGE")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return _error(413, f"body must be at most {MAX_BODY_BYTES} bytes", "TOO_LARGE")
        try:
            body = json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return _error(422, "body must be JSON", "BAD_REQUEST")
        try:
            # Decoding an input image takes a moment: off the event loop.
            params = await asyncio.to_thread(parse_request, body)
        except RequestError as err:
            return _error(err.status, err.detail, err.code)
        try:
            pipeline = get_pipeline()
        except ModelUnavailable as err:
            return _error(503, str(err), "MODEL_UNAVAILABLE")
        if params.deadline is not None and clock() >= params.deadline:
            return _error(
                504, "the caller's deadline passed before generation started", "DEADLINE_PASSED"
            )

        gone = threading.Event()

        def should_stop() -> bool:
            return gone.is_set() or (params.deadline is not None and clock() >= params.deadline)

        def run(on_progress: Callable[[dict[str, Any]], None] | None) -> list[bytes]:
            preview = None
            if on_progress is not None and previews and params.preview:
                indices, pw, ph = preview_tokens(params.width, params.height)

                def preview(latents: Any) -> bytes:
                    return latent_preview(pipeline.read_tokens(latents, indices), pw, ph)

            callback = step_callback(
                should_stop,
                total_steps=denoising_steps(params.steps, params.strength),
                on_progress=on_progress,
                preview=preview,
            )
            with gpu:
                if should_stop():
                    raise GenerationCancelled("the caller has gone")
                images = list(pipeline.run(params, callback))
            if len(images) != len(params.seeds):
                raise RuntimeError(f"{len(images)} images for {len(params.seeds)} seeds")
            for img in images:
                if tuple(img.size) != (params.width, params.height):
                    size = f"{params.width}x{params.height}"
                    raise RuntimeError(f"an image of {img.size}, not {size}")
            return [encode_png(img) for img in images]

        if accepts_stream(request.headers.get("accept")):
            return StreamingResponse(
                _stream(params, run, gone),
                media_type=PROGRESS_STREAM_TYPE,
                # Asks proxies on the way not to hold the lines back (nginx reads the second).
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        # The pipeline blocks, so it runs in a thread; meanwhile this task notices a client
        # that went away (ASGI http.disconnect) and tells the pipeline to stop.
        work = asyncio.ensure_future(asyncio.to_thread(run, None))
        while not work.done():
            await asyncio.wait({work}, timeout=disconnect_poll_seconds)
            if not work.done() and await request.is_disconnected():
                gone.set()
        try:
            pngs = work.result()
        except GenerationCancelled:
            return _error(504, STOPPED, "STOPPED")
        except Exception as err:  # a GPU failure (out of memory, ...): logged, answered 500
            log.exception("generation failed")
            return _error(500, f"generation failed: {type(err).__name__}", "GENERATION_FAILED")
        if len(pngs) == 1:
            return Response(
                content=pngs[0], media_type="image/png", headers={"X-Seed": str(params.seeds[0])}
            )
        return JSONResponse(
            {
                "images": [
                    {
                        "image": base64.b64encode(png).decode("ascii"),
                        "seed": seed,
                        "content_type": "image/png",
                    }
                    for png, seed in zip(pngs, params.seeds, strict=True)
                ]
            }
        )

    return app


async def _stream(
    params: GenerateParams,
    run: Callable[[Callable[[dict[str, Any]], None] | None], list[bytes]],
    gone: threading.Event,
):
    """The NDJSON body: progress lines as the steps end, then one image line per image. When
    the client goes, Starlette stops this generator (a disconnect, or a write that fails): the
    `finally` tells the pipeline, which stops at its next step."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_progress(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    work = asyncio.ensure_future(asyncio.to_thread(run, on_progress))
    try:
        while True:
            next_event = asyncio.ensure_future(events.get())
            await asyncio.wait({next_event, work}, return_when=asyncio.FIRST_COMPLETED)
            if next_event.done():
                yield _line(next_event.result())
                continue
            next_event.cancel()
            break
        while not events.empty():  # the last steps' lines, queued as the work ended
            yield _line(events.get_nowait())
        try:
            pngs = work.result()
        except GenerationCancelled:
            yield _line({"type": "error", "code": "STOPPED", "message": STOPPED})
            return
        except Exception as err:
            log.exception("generation failed")
            yield _line(
                {
                    "type": "error",
                    "code": "GENERATION_FAILED",
                    "message": f"generation failed: {type(err).__name__}",
                }
            )
            return
        for index, (png, seed) in enumerate(zip(pngs, params.seeds, strict=True)):
            yield _line(
                {
                    "type": "image",
                    "index": index,
                    "seed": seed,
                    "content_type": "image/png",
                    "data": base64.b64encode(png).decode("ascii"),
                }
            )
    finally:
        if not work.done():
            gone.set()
