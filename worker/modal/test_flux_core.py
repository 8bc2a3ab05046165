"""flux_core under a stand-in pipeline: what the Modal endpoint answers, and when it stops the GPU.

Runs with Debian's python3-fastapi, python3-pil, python3-pytest and python3-httpx
(`python3 -m pytest -q worker/modal`); vitest runs it as part of `npm test`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json

import flux_core
import pytest
from fastapi.testclient import TestClient
from flux_core import (
    FLUX_LATENT_RGB_BIAS,
    FLUX_LATENT_RGB_FACTORS,
    MAX_BODY_BYTES,
    GenerateParams,
    GenerationCancelled,
    ModelUnavailable,
    accepts_stream,
    create_app,
    denoising_steps,
    latent_preview,
    parse_request,
    preview_tokens,
    step_callback,
)
from PIL import Image
from stand_in import StandIn

NDJSON = {"accept": "application/x-ndjson, image/*"}
VARY = {"task": "vary", "prompt": "a"}
UPSCALE = {"task": "upscale", "prompt": "a"}


def client_for(pipeline, **kwargs) -> TestClient:
    return TestClient(create_app(lambda: pipeline, **kwargs))


def png_b64(width: int, height: int, colour=(10, 200, 30), fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def striped_b64(width: int, height: int) -> tuple[Image.Image, str]:
    """An input whose left and right halves differ, so a crop or a resize shows."""
    img = Image.new("RGB", (width, height), (255, 0, 0))
    img.paste((0, 0, 255), (width // 2, 0, width, height))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return img, base64.b64encode(buf.getvalue()).decode()


def decode(data: bytes | str) -> Image.Image:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return Image.open(io.BytesIO(raw))


def ndjson(res) -> list[dict]:
    return [json.loads(line) for line in res.text.splitlines() if line]


# --- generate: one image, a batch, seeds -------------------------------------------------


def test_answers_a_png_of_the_requested_size_with_the_seed():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/", json={"prompt": " a fox ", "width": 320, "height": 192, "seed": 7, "steps": 3}
    )
    assert res.status_code == 200
    assert res.headers["content-type"] == "image/png"
    assert res.headers["x-seed"] == "7"
    img = decode(res.content)
    assert (img.format, img.size) == ("PNG", (320, 192))
    assert img.getpixel((0, 0)) == (7, 0, 150)
    assert pipe.calls == [GenerateParams("generate", "a fox", 320, 192, (7,), 3)]
    assert pipe.steps_run == 3


def test_defaults_for_what_the_request_leaves_out():
    pipe = StandIn()
    res = client_for(pipe).post("/", json={"prompt": "a fox"})
    assert res.status_code == 200
    assert pipe.calls == [GenerateParams("generate", "a fox", 1024, 1024, (0,), 4)]


def test_a_batch_of_four_is_one_call_with_seeds_seed_to_seed_plus_3_each_reproduced_alone():
    pipe = StandIn()
    client = client_for(pipe)
    base = 2**32 - 2  # the seeds wrap: (seed + i) mod 2^32
    res = client.post(
        "/", json={"prompt": "a fox", "width": 64, "height": 64, "seed": base, "count": 4}
    )
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/json"
    images = res.json()["images"]
    expected = [2**32 - 2, 2**32 - 1, 0, 1]
    assert [i["seed"] for i in images] == expected
    assert len(pipe.calls) == 1 and pipe.calls[0].seeds == tuple(expected)
    for image, seed in zip(images, expected, strict=True):
        assert image["content_type"] == "image/png"
        alone = client.post(
            "/", json={"prompt": "a fox", "width": 64, "height": 64, "seed": seed}
        )
        assert alone.headers["x-seed"] == str(seed)
        assert base64.b64decode(image["image"]) == alone.content
    # ... and the four differ from each other.
    assert len({i["image"] for i in images}) == 4


def test_explicit_seeds_are_used_in_order():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/",
        json={"prompt": "a", "width": 64, "height": 64, "seeds": [9, 3, 700], "seed": 9,
              "count": 3},
    )
    assert res.status_code == 200
    assert [i["seed"] for i in res.json()["images"]] == [9, 3, 700]
    assert pipe.calls[0].seeds == (9, 3, 700)


# --- vary and upscale: image to image from the input ------------------------------------


def test_vary_passes_the_input_fitted_to_the_job_size_and_the_strength_to_img2img():
    pipe = StandIn()
    source, data = striped_b64(320, 192)
    res = client_for(pipe).post(
        "/",
        json={"task": "vary", "prompt": "a fox", "width": 320, "height": 192, "seed": 5,
              "count": 2, "strength": 0.35, "image": data, "image_type": "image/png"},
    )
    assert res.status_code == 200
    (call,) = pipe.calls
    assert (call.task, call.strength, call.seeds, call.width, call.height) == (
        "vary", 0.35, (5, 6), 320, 192,
    )
    assert call.image.tobytes() == source.tobytes()  # the input itself, same size: untouched
    images = res.json()["images"]
    assert [i["seed"] for i in images] == [5, 6]
    # The stand-in blends its colour over the input at the strength: the input shows through.
    left = decode(images[0]["image"]).convert("RGB").getpixel((10, 10))
    red, own = Image.new("RGB", (1, 1), (255, 0, 0)), Image.new("RGB", (1, 1), (5, 0, 150))
    assert left == Image.blend(red, own, 0.35).getpixel((0, 0))


def test_vary_crops_an_input_of_another_aspect_to_the_job_size_and_defaults_to_strong():
    pipe = StandIn()
    _, data = striped_b64(400, 200)  # 2:1, red left, blue right
    res = client_for(pipe).post(
        "/", json={"task": "vary", "prompt": "a", "width": 192, "height": 192, "image": data}
    )
    assert res.status_code == 200
    (call,) = pipe.calls
    assert call.strength == 0.75
    assert call.image.size == (192, 192)
    # Cover, centre crop: the middle of the input, half red half blue, not squashed.
    assert call.image.getpixel((5, 96))[0] > 200 and call.image.getpixel((186, 96))[2] > 200


def test_vary_without_a_size_keeps_the_input_size():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/", json={"task": "vary", "prompt": "a", "image": png_b64(256, 128)}
    )
    assert res.status_code == 200
    assert (pipe.calls[0].width, pipe.calls[0].height) == (256, 128)


def test_upscale_doubles_the_size_from_a_lanczos_enlargement_at_strength_0_3():
    pipe = StandIn()
    source, data = striped_b64(160, 96)
    res = client_for(pipe).post(
        "/", json={"task": "upscale", "prompt": "a fox", "seed": 3, "image": data}
    )
    assert res.status_code == 200
    assert res.headers["x-seed"] == "3"
    assert decode(res.content).size == (320, 192)
    (call,) = pipe.calls
    assert (call.task, call.width, call.height, call.strength, call.seeds) == (
        "upscale", 320, 192, 0.3, (3,),
    )
    enlarged = source.resize((320, 192), Image.Resampling.LANCZOS)
    assert call.image.tobytes() == enlarged.tobytes()
    # Strength 0.3 of 4 steps: diffusers runs the last 2 (and the progress says so).
    assert pipe.steps_run == 2


def test_upscale_to_twice_the_input_as_the_worker_asks_it():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/",
        json={"task": "upscale", "prompt": "a", "width": 512, "height": 512, "strength": 0.3,
              "image": png_b64(256, 256), "seeds": [11], "count": 1},
    )
    assert res.status_code == 200
    assert decode(res.content).size == (512, 512)


# --- progress stream ---------------------------------------------------------------------


def test_the_stream_sends_each_step_in_order_with_a_preview_then_the_images():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/",
        json={"prompt": "a", "width": 256, "height": 128, "seed": 40, "count": 2, "steps": 3},
        headers=NDJSON,
    )
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson(res)
    progress = [line for line in lines if line["type"] == "progress"]
    assert [(p["step"], p["steps"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert lines[:3] == progress  # every progress line before any image
    for p in progress:
        preview = decode(p["preview"])
        assert preview.format == "JPEG" and preview.size == (16, 8)  # one pixel per token
    images = lines[3:]
    assert [(i["type"], i["index"], i["seed"]) for i in images] == [
        ("image", 0, 40),
        ("image", 1, 41),
    ]
    assert all(decode(i["data"]).size == (256, 128) for i in images)


def test_stream_steps_of_an_img2img_are_the_steps_it_runs():
    pipe = StandIn()
    res = client_for(pipe).post(
        "/",
        json={**VARY, "steps": 4, "strength": 0.75, "image": png_b64(64, 64)},
        headers=NDJSON,
    )
    progress = [line for line in ndjson(res) if line["type"] == "progress"]
    assert [(p["step"], p["steps"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]


def test_previews_can_be_left_out_by_the_request_or_the_deployment():
    for client, body in (
        (client_for(StandIn()), {"prompt": "a", "width": 64, "height": 64, "preview": False}),
        (client_for(StandIn(), previews=False), {"prompt": "a", "width": 64, "height": 64}),
    ):
        lines = ndjson(client.post("/", json=body, headers=NDJSON))
        progress = [line for line in lines if line["type"] == "progress"]
        assert len(progress) == 4 and all("preview" not in p for p in progress)
        assert lines[-1]["type"] == "image"


def test_a_preview_that_fails_costs_the_preview_only():
    def bad_row(step, token):
        return [0.0]  # too short: the preview cannot read it
    pipe = StandIn(latent_row=bad_row)
    res = client_for(pipe).post("/", json={"prompt": "a", "width": 64, "height": 64}, headers=NDJSON)
    lines = ndjson(res)
    assert [line["type"] for line in lines] == ["progress"] * 4 + ["image"]
    assert all("preview" not in line for line in lines[:4])


def test_a_plain_image_answer_when_the_stream_is_not_asked_for():
    for accept in ("image/*", "*/*", "application/x-ndjson;q=0, image/png"):
        res = client_for(StandIn()).post(
            "/", json={"prompt": "a", "width": 64, "height": 64}, headers={"accept": accept}
        )
        assert res.headers["content-type"] == "image/png", accept


def test_a_gpu_failure_mid_stream_is_an_error_line():
    pipe = StandIn(fail=RuntimeError("CUDA out of memory"))
    lines = ndjson(client_for(pipe).post("/", json={"prompt": "a"}, headers=NDJSON))
    assert lines == [
        {"type": "error", "code": "GENERATION_FAILED", "message": "generation failed: RuntimeError"}
    ]


def test_accepts_stream_reads_the_accept_header():
    assert accepts_stream("application/x-ndjson, image/*")
    assert accepts_stream("image/*, application/x-ndjson;q=0.5")
    assert not accepts_stream("application/x-ndjson;q=0")
    assert not accepts_stream("image/*")
    assert not accepts_stream(None)


# --- stop: deadline, disconnect -----------------------------------------------------------


def test_a_deadline_already_past_starts_no_generation():
    pipe = StandIn()
    res = client_for(pipe, clock=lambda: 1_000.0).post(
        "/", json={"prompt": "a fox", "deadline": 999.5}
    )
    assert res.status_code == 504
    assert res.json()["error"]["code"] == "DEADLINE_PASSED"
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
    assert res.json()["error"]["code"] == "STOPPED"
    assert pipe.steps_run == 1  # of 4: the remaining steps never ran


def test_step_callback_passes_the_tensors_through_until_told_to_stop():
    stop = [False]
    callback = step_callback(lambda: stop[0])
    kwargs = {"latents": object()}
    assert callback(None, 0, 999, kwargs) is kwargs
    stop[0] = True
    with pytest.raises(GenerationCancelled):
        callback(None, 1, 998, kwargs)


def test_step_callback_reports_step_of_the_pipelines_own_count():
    seen = []

    class Pipe:
        num_timesteps = 2

    callback = step_callback(lambda: False, total_steps=4, on_progress=seen.append)
    callback(Pipe(), 0, 999, {})
    callback(object(), 1, 998, {})  # no num_timesteps: the planned count
    assert seen == [
        {"type": "progress", "step": 1, "steps": 2},
        {"type": "progress", "step": 2, "steps": 4},
    ]


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 80),
}


def drive(app, body: bytes, headers: list, gone_when):
    """Drive the app at the ASGI level, as Modal's web layer does: the request, then an
    http.disconnect once `gone_when(sent)` says the client has gone."""
    sent: list[dict] = []

    async def main():
        first = [True]

        async def receive():
            if first[0]:
                first[0] = False
                return {"type": "http.request", "body": body, "more_body": False}
            while not gone_when(sent):
                await asyncio.sleep(0.002)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = dict(SCOPE, headers=[*headers, (b"content-length", b"%d" % len(body))])
        await asyncio.wait_for(app(scope, receive, send), timeout=20)

    asyncio.run(main())
    return sent


def test_a_client_that_disconnects_stops_the_pipeline():
    pipe = StandIn(wait_for_stop_from=0)
    app = create_app(lambda: pipe, disconnect_poll_seconds=0.005)
    body = json.dumps({"prompt": "a fox", "steps": 4}).encode()
    headers = [(b"content-type", b"application/json")]
    sent = drive(app, body, headers, lambda _: pipe.started.is_set())
    assert pipe.finished.wait(10)
    assert pipe.steps_run == 0  # the first step never finished: the GPU was let go
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 504


def test_a_stream_client_that_disconnects_stops_the_pipeline_at_the_next_step():
    pipe = StandIn(wait_for_stop_from=1)
    app = create_app(lambda: pipe)
    body = json.dumps({"prompt": "a fox", "width": 64, "height": 64, "steps": 4}).encode()

    def saw_a_progress_line(sent):
        return any(b'"progress"' in m.get("body", b"") for m in sent)

    sent = drive(
        app, body,
        [(b"content-type", b"application/json"), (b"accept", b"application/x-ndjson")],
        saw_a_progress_line,
    )
    assert pipe.finished.wait(10)
    assert pipe.steps_run == 1  # step 1 ran and was reported; step 2 stopped on the disconnect
    bodies = b"".join(m.get("body", b"") for m in sent)
    assert b'"image"' not in bodies


# --- refusals ------------------------------------------------------------------------------


def gif_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="GIF")
    return base64.b64encode(buf.getvalue()).decode()


def truncated_png_b64() -> str:
    raw = base64.b64decode(png_b64(256, 256))
    return base64.b64encode(raw[: len(raw) // 2]).decode()




@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("not json", "JSON"),
        ("[" * 100_000, "JSON"),
        ("[1, 2]", "object"),
        ("{}", "prompt"),
        ('{"prompt": "   "}', "prompt"),
        (json.dumps({"prompt": "x" * 1001}), "1000"),
        ('{"prompt": "a", "task": "inpaint"}', "task"),
        ('{"prompt": "a", "width": 100}', "multiple of 16"),
        ('{"prompt": "a", "width": 4096}', "width"),
        ('{"prompt": "a", "height": 48}', "height"),
        ('{"prompt": "a", "width": "1024"}', "width"),
        ('{"prompt": "a", "width": true}', "width"),
        ('{"prompt": "a", "width": 1024.5}', "width"),
        ('{"prompt": "a", "seed": -1}', "seed"),
        ('{"prompt": "a", "seed": 4294967296}', "seed"),
        ('{"prompt": "a", "steps": 0}', "steps"),
        ('{"prompt": "a", "steps": 51}', "steps"),
        ('{"prompt": "a", "count": 0}', "count"),
        ('{"prompt": "a", "count": 5}', "count"),
        ('{"prompt": "a", "count": "2"}', "count"),
        ('{"prompt": "a", "seeds": [1, 2, 3, 4, 5]}', "seeds"),
        ('{"prompt": "a", "seeds": []}', "seeds"),
        ('{"prompt": "a", "seeds": "1,2"}', "seeds"),
        ('{"prompt": "a", "seeds": [1, -2]}', "seeds"),
        ('{"prompt": "a", "seeds": [1, 2], "count": 3}', "count"),
        ('{"prompt": "a", "seeds": [1, 2], "seed": 2}', "seeds[0]"),
        ('{"prompt": "a", "strength": 0.5}', "strength"),
        (json.dumps({"prompt": "a", "image": png_b64(64, 64)}), "image"),
        ('{"prompt": "a", "preview": "yes"}', "preview"),
        ('{"prompt": "a", "deadline": "soon"}', "deadline"),
        ('{"prompt": "a", "deadline": NaN}', "deadline"),
        ('{"prompt": "a", "deadline": -5}', "deadline"),
        (b'{"prompt": "\xff"}', "JSON"),
        (json.dumps(VARY), "input image"),
        (json.dumps({**VARY, "image": 42}), "base64"),
        (json.dumps({**VARY, "image": "%%%not base64%%%"}), "base64"),
        (json.dumps({**VARY, "image": base64.b64encode(b"<svg/>").decode()}), "not an image"),
        (json.dumps({**VARY, "image": gif_b64()}), "GIF"),
        (json.dumps({**VARY, "image": truncated_png_b64()}), "does not decode"),
        (json.dumps({**VARY, "image": png_b64(64, 64), "strength": 0}), "strength"),
        (json.dumps({**VARY, "image": png_b64(64, 64), "strength": 1.5}), "strength"),
        (json.dumps({**VARY, "image": png_b64(64, 64), "strength": "strong"}), "strength"),
        (json.dumps({**VARY, "image": png_b64(64, 64), "width": 100}), "multiple of 16"),
        (json.dumps({**VARY, "image": png_b64(50, 50)}), "multiple of 16"),
        (json.dumps({**UPSCALE, "image": png_b64(64, 64), "count": 2}), "one image"),
        (json.dumps({**UPSCALE, "image": png_b64(1536, 16)}), "2048"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else "long-or-binary",
)
def test_refuses_malformed_requests_with_422_naming_the_problem(body, names):
    pipe = StandIn()
    res = client_for(pipe).post(
        "/", content=body, headers={"content-type": "application/json"}
    )
    assert res.status_code == 422, res.text
    assert names in res.json()["detail"]
    assert res.json()["error"] == {"code": "BAD_REQUEST", "message": res.json()["detail"]}
    assert pipe.calls == []


def test_refuses_an_oversized_body_with_413():
    pipe = StandIn()
    body = json.dumps({"prompt": "a", "pad": "x" * MAX_BODY_BYTES}).encode()
    res = client_for(pipe).post("/", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 413
    assert res.json()["error"]["code"] == "TOO_LARGE"
    assert pipe.calls == []


def test_refuses_an_input_image_over_the_byte_or_pixel_cap_with_413(monkeypatch):
    pipe = StandIn()
    monkeypatch.setattr(flux_core, "MAX_IMAGE_BYTES", 1000)
    res = client_for(pipe).post("/", json={**VARY, "image": png_b64(512, 512, fmt="BMP")})
    assert res.status_code == 413 and "1000 bytes" in res.json()["detail"]
    monkeypatch.setattr(flux_core, "MAX_IMAGE_BYTES", 16 * 1024 * 1024)
    monkeypatch.setattr(flux_core, "MAX_IMAGE_PIXELS", 128 * 128)
    res = client_for(pipe).post("/", json={**VARY, "image": png_b64(256, 256)})
    assert res.status_code == 413 and "256x256" in res.json()["detail"]
    assert pipe.calls == []


def test_missing_weights_answer_503_with_the_command_that_fills_the_volume():
    def get_pipeline():
        raise ModelUnavailable("weights missing: run `modal run flux_app.py::download` once")

    res = TestClient(create_app(get_pipeline)).post("/", json={"prompt": "a fox"})
    assert res.status_code == 503
    assert "::download" in res.json()["detail"]


def test_a_gpu_failure_is_answered_500_not_a_crash():
    pipe = StandIn(fail=RuntimeError("CUDA out of memory"))
    res = client_for(pipe).post("/", json={"prompt": "a fox"})
    assert res.status_code == 500
    assert res.json()["detail"] == "generation failed: RuntimeError"


def test_a_pipeline_that_returns_too_few_images_is_a_failure_not_a_short_answer():
    pipe = StandIn(images_short=True)
    res = client_for(pipe).post("/", json={"prompt": "a", "width": 64, "height": 64, "count": 3})
    assert res.status_code == 500


def test_parse_request_keeps_an_integer_deadline_as_seconds():
    assert parse_request({"prompt": "a", "deadline": 1_700_000_000}).deadline == 1_700_000_000.0


# --- previews from latents -----------------------------------------------------------------


def test_denoising_steps_count_as_diffusers_img2img_does():
    assert denoising_steps(4, None) == 4
    assert denoising_steps(4, 0.3) == 2
    assert denoising_steps(4, 0.35) == 2
    assert denoising_steps(4, 0.75) == 3
    assert denoising_steps(1, 0.3) == 1
    assert denoising_steps(28, 0.6) == 17


def test_preview_tokens_one_pixel_per_token_at_most_64_a_side():
    indices, w, h = preview_tokens(1024, 768)
    assert (w, h) == (64, 48) and indices == list(range(64 * 48))
    indices, w, h = preview_tokens(2048, 2048)  # 128x128 tokens: every other one
    assert (w, h) == (64, 64)
    assert indices[:2] == [0, 2] and indices[64] == 2 * 128  # row 2, column 0
    indices, w, h = preview_tokens(2048, 1024)
    assert (w, h) == (64, 32)


def expected_pixel(channel_values: dict[int, float]) -> tuple[int, int, int]:
    out = []
    for k in range(3):
        v = FLUX_LATENT_RGB_BIAS[k]
        v += sum(x * FLUX_LATENT_RGB_FACTORS[c][k] for c, x in channel_values.items())
        out.append(max(0, min(255, int((v + 1) * 127.5))))
    return tuple(out)


def close(a, b, tolerance=4) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_latent_preview_unpacks_channels_as_diffusers_packs_them():
    # diffusers' _pack_latents: each token holds 16 channels x 2 x 2 as [c*4 + dy*2 + dx].
    row = [0.0] * 64
    row[12 * 4 : 12 * 4 + 4] = [10.0, 10.0, 10.0, 10.0]  # channel 12, all four sub-pixels
    jpeg = latent_preview([row] * 4, 2, 2)
    img = decode(jpeg)
    assert img.format == "JPEG" and img.size == (2, 2)
    assert close(img.getpixel((0, 0)), expected_pixel({12: 10.0}))
    # The sub-pixels are averaged: one of four at 8 is channel 13 at 2.
    row = [0.0] * 64
    row[13 * 4 + 3] = 8.0
    assert close(decode(latent_preview([row], 1, 1)).getpixel((0, 0)), expected_pixel({13: 2.0}))


def test_latent_preview_keeps_where_things_are():
    bright, dark = [0.0] * 64, [0.0] * 64
    bright[12 * 4 : 12 * 4 + 4] = [12.0] * 4
    dark[13 * 4 : 13 * 4 + 4] = [12.0] * 4
    rows = [bright] * 8 + [dark] * 8  # 4x4 tokens: top half bright, bottom half dark
    img = decode(latent_preview(rows, 4, 4))
    assert sum(img.getpixel((1, 0))) > sum(img.getpixel((1, 3))) + 200
    with pytest.raises(ValueError):
        latent_preview(rows, 4, 5)
