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

Tasks, all from the one set of loaded weights:
- generate: FluxPipeline, the N images of a job in one batched call, one torch Generator per
  image (seed + i), so any image can be made again alone;
- vary: FluxImg2ImgPipeline.from_pipe(pipe) (shares every module: no extra GPU memory, nothing
  more to load) from the input image at the job's strength (0.35 subtle, 0.75 strong);
- upscale: the same img2img at strength 0.3 over the input enlarged 2x with Lanczos, so Flux
  adds detail rather than the pixels being resampled. Chosen over a dedicated upscaler model
  (Real-ESRGAN, SwinIR, ...): no second model to download into the Volume, load at cold start
  or keep in GPU memory, and the prompt guides the added detail. Its limit: Flux works up to
  about 2 megapixels and this img2img is not tiled, so an upscale's output is capped at 2048 a
  side (flux_core.MAX_SIDE); a tiled pass (or a dedicated model) would be needed beyond that.

IMAGINE_FLUX_PREVIEWS=0 at deploy time leaves the latent previews out of progress lines.
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
PREVIEWS = os.environ.get("IMAGINE_FLUX_PREVIEWS", "1") != "0"

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
            "IMAGINE_FLUX_PREVIEWS": "1" if PREVIEWS else "0",
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
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

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
    # A batch of four, or a 2048-pixel upscale, decoded one image at a time and in tiles: the
    # VAE decoder's activations at 2048x2048 are what would run out of memory, not the
    # transformer. Images up to the VAE's tile size (1024) decode as before.
    pipe.vae.enable_slicing()
    pipe.vae.enable_tiling()
    if COMPILE:
        pipe.transformer = torch.compile(pipe.transformer, mode="max-autotune", fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode, mode="max-autotune", fullgraph=True)
    return pipe


class _TorchPipeline:
    """flux_core.Pipeline over diffusers' FluxPipeline and, for a vary or an upscale, the
    FluxImg2ImgPipeline built from it with `from_pipe`: the same modules (transformer, VAE,
    text encoders) in GPU memory once, no second model to load or download."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.img2img = FluxImg2ImgPipeline.from_pipe(pipe)

    def run(self, params, callback):
        # One generator per image: diffusers draws image i's noise from generator i alone, so
        # a call with just seeds[i] makes image i again.
        generators = [torch.Generator("cuda").manual_seed(seed) for seed in params.seeds]
        common = {
            "prompt": params.prompt,
            "width": params.width,
            "height": params.height,
            "num_inference_steps": params.steps,
            "num_images_per_prompt": len(params.seeds),
            "generator": generators,
            "guidance_scale": 0.0,  # schnell is guidance-distilled
            "max_sequence_length": 256,
            # Progress, previews, and a stop at the next step once the caller has gone.
            "callback_on_step_end": callback,
        }
        if params.image is None:
            return self.pipe(**common).images
        # Vary and upscale: image to image from the input flux_core fitted to the output size
        # (for an upscale, a 2x Lanczos enlargement; strength 0.3 adds detail over it). One
        # copy per image, because diffusers VAE-encodes image i with generator i: with a single
        # copy only generator 0 would encode and image i would not match a call of seeds[i].
        return self.img2img(
            image=[params.image] * len(params.seeds), strength=params.strength, **common
        ).images

    def read_tokens(self, latents, indices):
        # The first image's packed latent rows for a preview: a few KB copied to the host.
        index = torch.tensor(indices, device=latents.device)
        return latents[0].index_select(0, index).float().cpu().tolist()

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
            # Built again so the img2img pipeline shares the moved, optimised modules.
            self.pipeline = _TorchPipeline(_optimize(self.pipeline.pipe.to("cuda")))
            self.pipeline.warm_up()

    def _get_pipeline(self):
        if self.pipeline is None:
            raise flux_core.ModelUnavailable(self.unavailable or DOWNLOAD_HINT)
        return self.pipeline

    @modal.asgi_app(requires_proxy_auth=True)
    def web(self):
        return flux_core.create_app(self._get_pipeline, previews=PREVIEWS)
