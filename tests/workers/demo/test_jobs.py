from __future__ import annotations

import random

from sse_batcher.workers.demo.jobs import overlay_job, scene_job, thumbnail_job

MAKERS = (thumbnail_job, overlay_job, scene_job)


def test_a_seeded_generator_makes_the_same_jobs() -> None:
    first = [make(random.Random(5), 0.04) for make in MAKERS]
    second = [make(random.Random(5), 0.04) for make in MAKERS]
    assert [(p.name, p.steps, p.result, p.fail_at) for p in first] == [
        (p.name, p.steps, p.result, p.fail_at) for p in second
    ]


def test_jobs_look_like_a_render_farm_3_to_10_steps_of_0_2_to_3_seconds() -> None:
    rng = random.Random(1)
    for make in MAKERS:
        for _ in range(500):
            plan = make(rng, 0.0)
            assert 3 <= len(plan.steps) <= 10
            assert 0.2 - 1e-9 <= plan.seconds <= 3.0 + 1e-9
            assert plan.error is None and plan.result


def test_a_few_percent_fail_with_realistic_errors_that_say_they_are_simulated() -> None:
    rng = random.Random(2)
    plans = [make(rng, 0.04) for _ in range(3000) for make in MAKERS]
    failing = [p for p in plans if p.error is not None]
    assert 0.025 < len(failing) / len(plans) < 0.055
    assert all(p.fail_at is not None and 0 <= p.fail_at < len(p.steps) for p in failing)
    messages = {f"{type(p.error).__name__}: {p.error}" for p in failing}
    assert any(
        m.startswith("OSError: [Errno 28] simulated: No space left on device: '/var/cache/thumbs/") for m in messages
    )
    assert "ValueError: simulated: unsupported colour profile 'CMYK'" in messages
    assert any(
        m.startswith("TimeoutError: simulated: render node gpu-") and m.endswith("did not answer in 30 s")
        for m in messages
    )
    assert all("simulated: " in m for m in messages)
