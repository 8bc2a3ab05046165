"""A stand-in for the GPU pipeline, for tests: flux_core's endpoint over it, with no torch.

`StandIn` behaves like flux_app's torch pipeline as diffusers drives it (see its docstring).
Run as a script, it serves the real flux_core app over it on 127.0.0.1 (uvicorn), so the
TypeScript client is tested against the endpoint itself (test/worker/modal-contract.test.ts):

    python3 worker/modal/stand_in.py [--step-ms N]   # prints "listening on PORT"

GET /__stand_in answers what the stand-in saw (calls, steps run, stops), for those tests.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flux_core import GenerateParams, GenerationCancelled, create_app, denoising_steps  # noqa: E402
from PIL import Image  # noqa: E402


class StandIn:
    """Behaves like flux_app's torch pipeline as diffusers drives it: one batched call; image i
    made from `seeds[i]` alone (its colour comes from that seed, blended over the input image
    for image to image); `num_timesteps` set before the loop as diffusers does; the step
    callback after each denoising step with the packed latents (first image only: all
    `read_tokens` reads), then the images."""

    def __init__(
        self,
        *,
        wait_for_stop_from: int | None = None,
        on_step=None,
        fail: Exception | None = None,
        latent_row=None,
        images_short: bool = False,
        step_seconds: float = 0.0,
    ):
        self.calls: list[GenerateParams] = []
        self.steps_run = 0
        self.stops = 0
        self.started = threading.Event()
        self.finished = threading.Event()
        self.wait_for_stop_from = wait_for_stop_from
        self.on_step = on_step
        self.fail = fail
        self.latent_row = latent_row or (lambda step, token: [0.1 * step] * 64)
        self.images_short = images_short
        self.step_seconds = step_seconds
        self.num_timesteps = 0

    @staticmethod
    def image_for(params: GenerateParams, seed: int) -> Image.Image:
        colour = Image.new("RGB", (params.width, params.height), (seed % 256, seed >> 24, 150))
        if params.image is None:
            return colour
        return Image.blend(params.image, colour, params.strength)

    def run(self, params, callback):
        self.finished.clear()
        try:
            self.calls.append(params)
            self.started.set()
            if self.fail:
                raise self.fail
            self.num_timesteps = denoising_steps(params.steps, params.strength)
            tokens = (params.width // 16) * (params.height // 16)
            for step in range(self.num_timesteps):
                if self.step_seconds:
                    time.sleep(self.step_seconds)
                if self.wait_for_stop_from is not None and step >= self.wait_for_stop_from:
                    # A step that lasts until someone asks the pipeline to stop (10 s safety cap).
                    cap = time.monotonic() + 10
                    while not callback.should_stop() and time.monotonic() < cap:
                        time.sleep(0.001)
                latents = [[self.latent_row(step, t) for t in range(tokens)]]
                callback(self, step, 1000 - step, {"latents": latents})
                self.steps_run += 1
                if self.on_step:
                    self.on_step(step)
            images = [self.image_for(params, seed) for seed in params.seeds]
            return images[:-1] if self.images_short else images
        except GenerationCancelled:
            self.stops += 1
            raise
        finally:
            self.finished.set()

    def read_tokens(self, latents, indices):
        return [latents[0][i] for i in indices]


def describe(pipe: StandIn) -> dict[str, Any]:
    return {
        "calls": [
            {
                "task": c.task,
                "prompt": c.prompt,
                "width": c.width,
                "height": c.height,
                "seeds": list(c.seeds),
                "steps": c.steps,
                "strength": c.strength,
                "image": None if c.image is None else list(c.image.size),
            }
            for c in pipe.calls
        ],
        "steps_run": pipe.steps_run,
        "stops": pipe.stops,
        "running": pipe.started.is_set() and not pipe.finished.is_set(),
    }


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--step-ms", type=float, default=0)
    args = parser.parse_args()
    pipe = StandIn(step_seconds=args.step_ms / 1000)
    app = create_app(lambda: pipe, disconnect_poll_seconds=0.01)
    app.get("/__stand_in")(lambda: describe(pipe))

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)

    def report_port() -> None:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)

    threading.Thread(target=report_port, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
