"""``predict --bundle`` in-process: the service ``serve`` builds, one call per file."""

from __future__ import annotations

from pathlib import Path

from app.cli.offline import classify_files
from tests.conftest import DEMO_BUNDLE, encode, known_image

CLASSES = ("circle", "star", "cross", "stripes")


def test_more_files_than_admission_holds_at_once_are_each_classified_on_their_own_line(
    tmp_path: Path,
) -> None:
    """Forty files, one of them not an image: every other file answered with its class (more
    files than go into the service at once, so admission must pace them rather than refuse)."""
    paths, expected = [], []
    for i in range(40):
        name = CLASSES[i % len(CLASSES)]
        path = tmp_path / f"{i:02d}-{name}.png"
        path.write_bytes(encode(known_image(name, seed=i), "PNG"))
        paths.append(path)
        expected.append(name)
    paths[7].write_bytes(b"not an image")
    outcomes = classify_files(paths, DEMO_BUNDLE, top_k=1, device="cpu")
    assert [o.path for o in outcomes] == paths
    assert (outcomes[7].result, outcomes[7].code) == (None, "invalid_image")
    labels = [o.result.top.label for i, o in enumerate(outcomes) if i != 7 and o.result]
    assert labels == [name for i, name in enumerate(expected) if i != 7]
