"""FLUX.1-schnell on Modal, behind a proxy-auth web endpoint that speaks imagine's generator contract.

POST JSON {"prompt", "width", "height", "seed", "steps"} with Modal-Key / Modal-Secret headers
(Modal's proxy checks them before a container starts) -> image/png bytes, header X-Seed.

Deploy: see README, "Generators: Flux on Modal".
"""

import io

import modal

MODEL_ID = "black-forest-labs/FLUX.1-schnell"
CACHE_DIR = "/cache"

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
        "hf_transfer==0.1.9",
    )
    .env({"HF_HUB_CACHE": CACHE_DIR, "HF_HUB_ENABLE_HF_TRANSFER": "1"})
)

app = modal.App("imagine-flux", image=image)
weights = modal.Volume.from_name("imagine-flux-weights", create_if_missing=True)

MAX_SIDE = 2048
MAX_STEPS = 50


@app.cls(
    gpu="H100",
    volumes={CACHE_DIR: weights},
    secrets=[modal.Secret.from_name("huggingface")],
    scaledown_window=240,
    timeout=600,
)
class Flux:
    @modal.enter()
    def load(self) -> None:
        # Weights load once per container (cold start), then stay on the GPU.
        import torch
        from diffusers import FluxPipeline

        self.torch = torch
        self.pipe = FluxPipeline.from_pretrained(MODEL_ID, torch_dtype=torch.bfloat16).to("cuda")

    @modal.fastapi_endpoint(method="POST", requires_proxy_auth=True)
    def generate(self, body: dict):
        from fastapi import HTTPException
        from fastapi.responses import Response

        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 1000:
            raise HTTPException(status_code=422, detail="prompt must be 1-1000 characters")
        try:
            width = int(body.get("width", 1024))
            height = int(body.get("height", 1024))
            seed = int(body.get("seed", 0))
            steps = int(body.get("steps", 4))
        except (TypeError, ValueError):
            raise HTTPException(status_code=422, detail="width, height, seed and steps must be integers")
        if not (64 <= width <= MAX_SIDE and 64 <= height <= MAX_SIDE) or width % 16 or height % 16:
            raise HTTPException(status_code=422, detail="width and height: 64-2048, multiples of 16")
        if not (0 <= seed < 2**32) or not (1 <= steps <= MAX_STEPS):
            raise HTTPException(status_code=422, detail="seed 0..2^32-1, steps 1..50")

        generator = self.torch.Generator("cuda").manual_seed(seed)
        result = self.pipe(
            prompt,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=0.0,  # schnell is guidance-distilled
            max_sequence_length=256,
            generator=generator,
        ).images[0]
        buf = io.BytesIO()
        result.save(buf, format="PNG")
        return Response(content=buf.getvalue(), media_type="image/png", headers={"X-Seed": str(seed)})
