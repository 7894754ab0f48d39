"""The Explainer: an input-sized Grad-CAM in 0..1, on its own model copy, behind a bounded queue."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from app.model.bundle import load_bundle
from app.model.preprocessing import pixel_transform
from app.serving.errors import DrainingError, InvalidParameterError
from app.serving.explainer import Explainer, ExplainerBusyError, GradCam, grad_cam, target_index
from app.serving.runner import ModelRunner, RunnerOptions
from app.training.demo_data import render_image
from tests.conftest import DEMO_BUNDLE

SIZE = 112  # the demo model's input size


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(load_bundle(DEMO_BUNDLE), torch.device("cpu"), "fp32", RunnerOptions())


@pytest.fixture(scope="module")
def explainer(runner: ModelRunner) -> Iterator[Explainer]:
    explainer = Explainer(runner)
    yield explainer
    explainer.close()


@pytest.fixture(scope="module")
def star(runner: ModelRunner) -> torch.Tensor:
    """A demo image of a star, as the model's uint8 input."""
    spec = runner.bundle.manifest.preprocessing
    return pixel_transform(spec)(render_image("star", np.random.default_rng(7)))


def test_map_has_the_input_size_and_spans_0_to_1(explainer: Explainer, star: torch.Tensor) -> None:
    explanation = explainer.compute(star)
    assert explanation.cam.shape == (SIZE, SIZE)
    assert explanation.cam.dtype == torch.float32
    assert explanation.cam.min().item() == 0.0
    assert explanation.cam.max().item() == pytest.approx(1.0)
    assert explanation.pixels.shape == (3, SIZE, SIZE)


def test_default_target_is_the_serving_models_top_class(
    explainer: Explainer, runner: ModelRunner, star: torch.Tensor
) -> None:
    pixels = star
    explanation = explainer.compute(pixels)
    (top,) = runner.top_k(runner.predict([pixels])[0], 1)
    assert (explanation.label, explanation.index) == ("star", top.index)
    assert explanation.score == pytest.approx(top.score, abs=1e-4)


def test_another_target_gives_its_own_map_and_score(
    explainer: Explainer, star: torch.Tensor
) -> None:
    pixels = star
    top = explainer.compute(pixels)
    other = explainer.compute(pixels, target=explainer.labels.index("circle"))
    assert other.label == "circle"
    assert other.score < top.score
    assert not torch.equal(other.cam, top.cam)


def test_serving_model_is_untouched(runner: ModelRunner, star: torch.Tensor) -> None:
    model = runner.model
    before = {name: value.clone() for name, value in model.state_dict().items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    explainer = Explainer(runner)
    try:
        explainer.compute(star)
        explainer.compute(star, target=0)
    finally:
        explainer.close()
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks
    assert all(p.grad is None for p in model.parameters())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    copies = {p.data_ptr() for p in explainer.model.parameters()}
    assert copies.isdisjoint(p.data_ptr() for p in model.parameters())
    assert not any(p.requires_grad for p in explainer.model.parameters())


def test_target_is_a_label_or_an_index() -> None:
    labels = ["cat", "dog", "7"]
    assert target_index(labels, None) is None
    assert target_index(labels, "dog") == 1
    assert target_index(labels, "2") == 2
    assert target_index(labels, "7") == 2  # a label wins over an index
    for unknown in ("bird", "3", "-1", "1.0", "", "\u00b2", "9" * 5000):  # ² is no index
        with pytest.raises(InvalidParameterError, match="neither a label"):
            target_index(labels, unknown)


def test_a_map_without_positive_evidence_is_zero() -> None:
    activations = torch.rand(1, 8, 4, 4)
    cam = grad_cam(activations, -torch.ones(1, 8, 4, 4), SIZE)
    assert cam.shape == (SIZE, SIZE)
    assert torch.count_nonzero(cam) == 0


def test_overlay_is_an_input_sized_rgb_png_coloured_by_the_map() -> None:
    pixels = torch.full((3, SIZE, SIZE), 128, dtype=torch.uint8)
    cam = torch.zeros(SIZE, SIZE)
    cam[:, SIZE // 2 :] = 1.0
    png = GradCam("star", 5, 0.9, cam, pixels).overlay_png()
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (SIZE, SIZE))
    cold, hot = image.getpixel((0, 0)), image.getpixel((SIZE - 1, 0))
    assert cold[2] > cold[0] and hot[0] > hot[2]  # jet: blue for 0, red for 1


def test_busy_beyond_max_pending_until_the_thread_is_done(
    runner: ModelRunner, star: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    explainer = Explainer(runner, max_pending=2)
    started, release = threading.Event(), threading.Event()
    compute = explainer.compute

    def held(pixels: torch.Tensor, target: int | None = None) -> GradCam:
        started.set()
        release.wait(10)
        return compute(pixels, target)

    monkeypatch.setattr(explainer, "compute", held)

    async def scenario() -> None:
        first = asyncio.create_task(explainer.explain(star))
        second = asyncio.create_task(explainer.explain(star))
        await asyncio.sleep(0)  # one turn of the loop: both calls have taken their slots
        assert explainer.pending == 2
        with pytest.raises(ExplainerBusyError) as busy:
            await explainer.explain(star)
        assert busy.value.retry_after_s > 0
        # A caller that leaves does not free the slot of a pass the thread is running.
        assert await asyncio.to_thread(started.wait, 10)
        first.cancel()
        await asyncio.sleep(0)  # one turn of the loop: the cancel has reached the caller
        assert explainer.pending == 2
        with pytest.raises(ExplainerBusyError):
            explainer.check_capacity()
        release.set()
        assert (await second).label == "star"
        assert explainer.pending == 0
        explainer.check_capacity()

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        explainer.close()


def test_a_closed_explainer_refuses_as_draining(runner: ModelRunner, star: torch.Tensor) -> None:
    explainer = Explainer(runner)
    explainer.close()
    with pytest.raises(DrainingError, match="shutting down"):
        asyncio.run(explainer.explain(star))
    assert explainer.pending == 0


def test_the_fp32_copy_is_read_from_the_bundle_not_cast_from_a_half_model(
    runner: ModelRunner,
) -> None:
    half = ModelRunner(load_bundle(DEMO_BUNDLE), torch.device("cpu"), "bf16", RunnerOptions())
    explainer = Explainer(half)
    try:
        assert {p.dtype for p in explainer.model.parameters()} == {torch.float32}
        conv = explainer.model.get_submodule("layer4")[-1].conv2.weight
        assert torch.equal(conv, runner.model.get_submodule("layer4")[-1].conv2.weight)
    finally:
        explainer.close()
