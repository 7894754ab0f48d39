"""The harness's v2 bodies are what the service's own parser reads, images in order."""

from __future__ import annotations

from app.edge.open_inference.codec import parse_request
from benchmarks.bodies import BODY_KINDS, V2_BATCH, encode

IMAGES = [b"\xff\xd8one", b"\xff\xd8two", b"\xff\xd8three"]


def test_every_kind_names_its_path_and_images() -> None:
    for kind in BODY_KINDS:
        bodies = encode(IMAGES, kind, model="demo")
        assert len(bodies) == len(IMAGES)
        assert all(
            b.path.startswith("/v2/models/demo/" if "v2" in kind else "/predict") for b in bodies
        )
        assert {b.images for b in bodies} == {V2_BATCH if kind == "v2-binary8" else 1}


def test_v2_bodies_parse_to_their_images() -> None:
    for kind, expected in [("v2-json", [IMAGES[0]]), ("v2-binary", [IMAGES[0]])]:
        (body, *_) = encode(IMAGES, kind)
        header_length = dict(body.headers).get("Inference-Header-Content-Length")
        assert parse_request(body.data, header_length, (3, 112, 112), 64).inputs == expected
    body = encode(IMAGES, "v2-binary8")[1]
    parsed = parse_request(
        body.data, dict(body.headers)["Inference-Header-Content-Length"], (3, 112, 112), 64
    )
    assert parsed.inputs == [IMAGES[(1 + i) % 3] for i in range(V2_BATCH)]
