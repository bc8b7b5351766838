"""The demo farm's job catalogue: what a simulated render job does, how long, and how it fails.

Everything random is decided here, on the event loop, from the farm's own ``random.Random``: the
job that runs on a thread only replays its plan, so a seeded farm makes the same jobs every time
and no random generator is shared between threads.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["JobPlan", "album_name", "overlay_job", "scene_job", "thumbnail_job"]

# Thumbnail sizes a web shop renders from one upload, largest first.
_SIZES: Final = (2048, 1600, 1024, 800, 480, 320, 160)
_ALBUMS: Final = ("wedding-0613", "spring-lookbook", "catalogue-aw25", "press-kit", "product-shots", "user-uploads")
_OVERLAYS: Final = ("watermark", "caption burn-in", "price badge", "lower third", "logo bug")
_VIDEOS: Final = ("launch-teaser", "unboxing", "store-tour", "recipe-short", "interview-cut", "drone-pass")
_VARIANTS: Final = ("hero 4:5", "square 1:1", "banner 16:9", "story 9:16", "thumb 1:1")
_NODES: Final = ("gpu-1", "gpu-2", "gpu-3", "gpu-4", "cpu-7")


# Every failure the demo makes up says so, in the log line and in the JOB_FAILED event's error_message,
# so that nobody takes "No space left on device" for their own disk.
SIMULATED: Final = "simulated: "


@dataclass(frozen=True, slots=True)
class JobPlan:
    """One simulated job: a name, its steps with their seconds, and (maybe) where it fails."""

    name: str
    steps: tuple[tuple[str, float], ...]
    result: str
    fail_at: int | None = None
    error: Exception | None = None

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.steps)


def _duration(rng: random.Random, median: float, low: float, high: float) -> float:
    # Render times are long-tailed: most jobs are quick, a few take several times the median.
    return min(high, max(low, rng.lognormvariate(0.0, 0.55) * median))


def _timed(rng: random.Random, labels: list[str], weights: list[float], total: float) -> tuple[tuple[str, float], ...]:
    jittered = [w * rng.uniform(0.6, 1.4) for w in weights]
    scale = total / sum(jittered)
    return tuple((label, w * scale) for label, w in zip(labels, jittered, strict=True))


def _maybe_fail(
    rng: random.Random, plan: JobPlan, failure_rate: float, errors: list[tuple[str, Callable[[], Exception]]]
) -> JobPlan:
    """Make ``plan`` fail at a step whose label starts with one of the error's step prefixes."""
    if rng.random() >= failure_rate:
        return plan
    prefix, make = rng.choice(errors)
    candidates = [i for i, (label, _) in enumerate(plan.steps) if label.startswith(prefix)]
    at = rng.choice(candidates) if candidates else len(plan.steps) - 1
    return JobPlan(plan.name, plan.steps, plan.result, at, make())


def album_name(rng: random.Random) -> str:
    """Name one upload of several images (an album), shared by its thumbnail jobs."""
    return f"{rng.choice(_ALBUMS)}-{rng.randint(1, 99):02d}"


def thumbnail_job(rng: random.Random, failure_rate: float, album: str | None = None) -> JobPlan:
    """Decode an upload, resize it to 1-6 sizes, encode and upload: 3 to 10 steps, 0.2-1.6 s."""
    album = album or album_name(rng)
    image = f"IMG_{rng.randint(1000, 9999)}.jpg"
    sizes = sorted(rng.sample(_SIZES, rng.randint(1, 6)), reverse=True)
    labels = ["decode", *(f"resize {s}px" for s in sizes), "encode webp", "upload"]
    weights = [1.0, *(0.4 + s / 1600 for s in sizes), 1.6, 0.8]
    if rng.random() < 0.5:
        labels.insert(1, "auto-orient")
        weights.insert(1, 0.3)
    steps = _timed(rng, labels, weights, _duration(rng, 0.6, 0.2, 1.6))
    kilobytes = sum(max(4, s * s // 24_000) for s in sizes)
    plan = JobPlan(f"{album}/{image}", steps, f"{len(sizes)} sizes, {kilobytes} KB webp")
    tile = f"/var/cache/thumbs/{album}/{image[:-4]}_{sizes[-1]}.webp"
    return _maybe_fail(
        rng,
        plan,
        failure_rate,
        [
            ("upload", lambda: OSError(28, f"{SIMULATED}No space left on device", tile)),
            ("decode", lambda: ValueError(f"{SIMULATED}unsupported colour profile 'CMYK'")),
            (
                "decode",
                lambda: OSError(f"{SIMULATED}image file is truncated ({rng.randint(12, 900)} bytes not processed)"),
            ),
        ],
    )


def overlay_job(rng: random.Random, failure_rate: float) -> JobPlan:
    """Lay an overlay over a video: template, layout, frames in chunks, mux: 3 to 6 steps, 0.3-2.5 s."""
    video, overlay = rng.choice(_VIDEOS), rng.choice(_OVERLAYS)
    frames = rng.choice((240, 360, 480, 720))
    chunks = rng.randint(1, 3)
    per = frames // chunks
    labels = ["load template", *(f"render frames {i * per + 1}-{(i + 1) * per}" for i in range(chunks)), "mux"]
    weights = [0.5, *([2.0] * chunks), 0.7]
    if rng.random() < 0.6:
        labels.insert(1, "layout text")
        weights.insert(1, 0.4)
    steps = _timed(rng, labels, weights, _duration(rng, 0.9, 0.3, 2.5))
    node = rng.choice(_NODES)
    plan = JobPlan(f"{video}.mp4 {overlay}", steps, f"{frames} frames on {node}")
    return _maybe_fail(
        rng,
        plan,
        failure_rate,
        [
            ("render", lambda: TimeoutError(f"{SIMULATED}render node {node} did not answer in 30 s")),
            ("layout", lambda: LookupError(f"{SIMULATED}font 'Inter Display Bold' has no glyph for U+1F600")),
        ],
    )


def scene_job(rng: random.Random, failure_rate: float) -> JobPlan:
    """Re-render a catalogue item in every format and publish it: 4 to 10 steps, 0.5-3 s."""
    sku = f"sku-{rng.randint(10_000, 99_999)}"
    variants = rng.sample(_VARIANTS, rng.randint(1, 5))
    labels = ["fetch assets", "composite", *(f"render {v}" for v in variants), "publish to CDN"]
    weights = [0.8, 1.2, *([1.5] * len(variants)), 0.6]
    if rng.random() < 0.5:
        labels.insert(2, "colour grade")
        weights.insert(2, 0.9)
    if rng.random() < 0.4:
        labels.insert(-1, "optimise")
        weights.insert(-1, 0.5)
    steps = _timed(rng, labels, weights, _duration(rng, 1.4, 0.5, 3.0))
    node = rng.choice(_NODES)
    plan = JobPlan(f"{sku} {variants[0]}", steps, f"{len(variants)} formats published")
    return _maybe_fail(
        rng,
        plan,
        failure_rate,
        [
            ("publish", lambda: ConnectionResetError(104, f"{SIMULATED}Connection reset by peer")),
            ("render", lambda: TimeoutError(f"{SIMULATED}render node {node} did not answer in 30 s")),
            (
                "fetch",
                lambda: FileNotFoundError(2, f"{SIMULATED}No such file or directory", f"/mnt/assets/{sku}/master.tif"),
            ),
        ],
    )
