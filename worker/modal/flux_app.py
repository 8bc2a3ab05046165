"""FLUX.1-schnell on Modal, behind a proxy-auth web endpoint that speaks imagine's generator contract.

Only the Modal / torch / diffusers wiring lives here; what the endpoint accepts and answers is
in flux_core.py (tested without a GPU). Set-up order (README, "Generators: Flux on Modal"):

    modal run worker/modal/flux_app.py::download   # once: fills the Volume with the weights
    modal deploy worker/modal/flux_app.py          # prints the endpoint URL

Cold starts, the way Modal's own Flux example and memory-snapshot guide do them:
- weights come from a Volume (never downloaded by a serving container; HF_HUB_OFFLINE=1);
- `enable_memory_snapshot=True` with `@modal.enter(snap=True)`: the loaded pipeline is
  snapshotted, and later containers restore it instead of importing torch and reading weights;
- the GPU snapshot (alpha, `experimental_options={"enable_gpu_snapshot": True}`) also keeps the
  weights already on the GPU. IMAGINE_FLUX_GPU_SNAPSHOT=0 at deploy time turns it off: then the
  CPU snapshot holds the weights in host memory and they move to the GPU after restore;
- with IMAGINE_FLUX_COMPILE=1 at deploy time the transformer and VAE decoder are compiled with
  torch.compile, and the nvcc / triton / inductor caches live on Volumes so later containers
  reuse them.
"""

from __future__ import annotations

import os

import modal

MODEL_ID = "black-forest-labs/FLUX.1-schnell"
CACHE_DIR = "/cache"
MINUTES = 60

# Read at deploy time and baked into the image's environment, so the container sees the same.
GPU_SNAPSHOT = os.environ.get("IMAGINE_FLUX_GPU_SNAPSHOT", "1") != "0"
COMPILE = os.environ.get("IMAGINE_FLUX_COMPILE", "0") == "1"

image = (
    modal.Image.debian_slim(python_version="3.12")
    .pip_install(
        "torch==2.7.1",
        "diffusers==0.34.0",
        "transformers==4.53.2",
        "accelerate==1.9.0",
        "sentencepiece==0.2.0",
        "protobuf==6.31.1",
        "fastapi[standard]==0.116.1",
        "huggingface_hub[hf_transfer]==0.33.4",
    )
    .env(
        {
            "HF_HUB_CACHE": CACHE_DIR,
            "HF_HUB_ENABLE_HF_TRANSFER": "1",
            "TORCHINDUCTOR_CACHE_DIR": "/root/.inductor-cache",
            "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
            "IMAGINE_FLUX_GPU_SNAPSHOT": "1" if GPU_SNAPSHOT else "0",
            "IMAGINE_FLUX_COMPILE": "1" if COMPILE else "0",
        }
    )
    .add_local_python_source("flux_core")
)

app = modal.App("imagine-flux", image=image)
weights = modal.Volume.from_name("imagine-flux-weights", create_if_missing=True)
compile_caches = {
    "/root/.nv": modal.Volume.from_name("imagine-flux-nv-cache", create_if_missing=True),
    "/root/.triton": modal.Volume.from_name("imagine-flux-triton-cache", create_if_missing=True),
    "/root/.inductor-cache": modal.Volume.from_name(
        "imagine-flux-inductor-cache", create_if_missing=True
    ),
}

with image.imports():
    import flux_core
    import torch
    from diffusers import FluxPipeline

DOWNLOAD_HINT = (
    f"{MODEL_ID} weights are not on the Modal Volume imagine-flux-weights: run "
    "`modal run worker/modal/flux_app.py::download` once, then `modal deploy` again"
)


@app.function(
    volumes={CACHE_DIR: weights},
    # HF_TOKEN of an account that accepted the FLUX.1-schnell licence (README, step 2).
    secrets=[modal.Secret.from_name("huggingface", required_keys=["HF_TOKEN"])],
    timeout=60 * MINUTES,
    cpu=4,
)
def download() -> None:
    """One-off: fill the Volume with the diffusers-format weights (~34 GB). Safe to run again."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        MODEL_ID,
        # The repo also ships the single-file checkpoints of the reference implementation,
        # which diffusers does not read.
        ignore_patterns=["flux1-schnell.safetensors", "ae.safetensors", "*.md", "*.jpg", "*.png"],
    )
    weights.commit()
    print(f"weights ready in {path}")


def _optimize(pipe):
    # From Modal's Flux example: fused QKV projections and channels_last memory layout.
    pipe.transformer.fuse_qkv_projections()
    pipe.vae.fuse_qkv_projections()
    pipe.transformer.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    if COMPILE:
        pipe.transformer = torch.compile(pipe.transformer, mode="max-autotune", fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode, mode="max-autotune", fullgraph=True)
    return pipe


class _TorchPipeline:
    """flux_core.Pipeline over diffusers' FluxPipeline."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe

    def generate(self, params, should_stop):
        generator = torch.Generator("cuda").manual_seed(params.seed)
        return self.pipe(
            params.prompt,
            width=params.width,
            height=params.height,
            num_inference_steps=params.steps,
            guidance_scale=0.0,  # schnell is guidance-distilled
            max_sequence_length=256,
            generator=generator,
            # Stops the denoising loop at the next step once the caller has gone.
            callback_on_step_end=flux_core.step_callback(should_stop),
        ).images[0]

    def warm_up(self) -> None:
        # Triggers compilation (when on) and CUDA kernel selection before any request.
        self.pipe("warm-up", num_inference_steps=1, guidance_scale=0.0, max_sequence_length=256)


@app.cls(
    gpu="H100",
    volumes={CACHE_DIR: weights, **compile_caches},
    # Serving containers never download: missing weights are answered 503 with DOWNLOAD_HINT.
    secrets=[modal.Secret.from_dict({"HF_HUB_OFFLINE": "1"})],
    scaledown_window=240,
    # Per input. The worker stops waiting after GENERATOR_TIMEOUT_MS and tells the app through
    # the request's deadline; this bounds a call whose caller vanished without one.
    timeout=10 * MINUTES,
    enable_memory_snapshot=True,
    experimental_options={"enable_gpu_snapshot": True} if GPU_SNAPSHOT else {},
)
class Flux:
    @modal.enter(snap=True)
    def load(self) -> None:
        # Runs once when a snapshot is made; restored containers start after this point.
        self.unavailable: str | None = None
        self.pipeline: _TorchPipeline | None = None
        try:
            pipe = FluxPipeline.from_pretrained(MODEL_ID, torch_dtype=torch.bfloat16)
        except (OSError, ValueError):  # offline and not on the Volume
            self.unavailable = DOWNLOAD_HINT
            return
        if GPU_SNAPSHOT:
            self.pipeline = _TorchPipeline(_optimize(pipe.to("cuda")))
            self.pipeline.warm_up()
        else:
            self.pipeline = _TorchPipeline(pipe)  # host memory only: CPU snapshots hold no CUDA

    @modal.enter(snap=False)
    def to_gpu(self) -> None:
        # Runs in every container after restore.
        if self.pipeline is not None and not GPU_SNAPSHOT:
            self.pipeline.pipe = _optimize(self.pipeline.pipe.to("cuda"))
            self.pipeline.warm_up()

    def _get_pipeline(self):
        if self.pipeline is None:
            raise flux_core.ModelUnavailable(self.unavailable or DOWNLOAD_HINT)
        return self.pipeline

    @modal.asgi_app(requires_proxy_auth=True)
    def web(self):
        return flux_core.create_app(self._get_pipeline)
