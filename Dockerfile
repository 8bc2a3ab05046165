# syntax=docker/dockerfile:1
# imagine: one image for both Fly process groups (relay, worker). Node 24 runs the TypeScript
# sources directly (type stripping); nothing is transpiled.

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts are skipped here; the page is built explicitly below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN node web-preview/build.ts \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
# glibc malloc: images freed from the result buffer go back to the OS (fixed mmap and trim
# thresholds; glibc's default raises them after the first free, keeping 1 MiB buffers on the
# heap), and two arenas instead of one per thread. The mmap threshold is 16 KiB, not 64: blocks
# of 16–64 KiB (V8's compiler zones are 8–32 KiB segments) otherwise interleave with long-lived
# small ones on the heap, which then cannot shrink. `npm run bench:cost memory` (it runs its
# servers with these settings): relay RSS after 1,000 1 MiB images left the buffer 3.2× idle →
# 1.3× (64 KiB) → 1.15× (16 KiB); idle RSS 152 → 140 → 138 MB.
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=16384 \
    MALLOC_TRIM_THRESHOLD_=65536
WORKDIR /app
RUN mkdir -p /data && chown node:node /data
COPY --from=build --chown=node:node /app /app
USER node
EXPOSE 8080
# "relay" or "worker" is given by fly.toml's [processes]; with no argument, ROLE decides.
ENTRYPOINT ["node", "runtime/main.ts"]
