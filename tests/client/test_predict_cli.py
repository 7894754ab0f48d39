"""``resnet-serve predict`` as users run it: a subprocess against the real server."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import main
from app.client import ResnetClient, ResnetServeError
from tests.conftest import CLI, REPO, ServerProcess, encode, free_port, known_image


def predict(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "predict", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def image_dir(tmp_path: Path, labelled_jpegs: list[tuple[str, bytes]]) -> dict[str, str]:
    """The demo JPEGs, half in a subfolder, plus a file that is not an image: path -> label."""
    expected = {}
    for position, (label, jpeg) in enumerate(labelled_jpegs):
        folder = tmp_path / "images" / ("nested" if position % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{position:02d}-{label}.jpg"
        path.write_bytes(jpeg)
        expected[str(path)] = label
    (tmp_path / "images" / "notes.txt").write_text("not an image, not a .jpg: skipped")
    return expected


def test_the_table_shows_each_images_top_label_in_sorted_order(
    demo_server: ServerProcess, image_dir: dict[str, str]
) -> None:
    folder = str(Path(next(iter(image_dir))).parent)
    done = predict(folder, "--url", demo_server.url, "--top-k", "3")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    assert [row[0] for row in rows] == sorted(image_dir, key=Path)
    assert {row[0]: row[1] for row in rows} == image_dir
    assert all(len(row) == 1 + 2 * 3 for row in rows)  # path, then 3 labels with their scores


def test_json_output_lists_each_path_with_its_predictions(
    demo_server: ServerProcess, image_dir: dict[str, str]
) -> None:
    folder = str(Path(next(iter(image_dir))).parent)
    done = predict(folder, "--url", demo_server.url, "--json", "--top-k", "2", "--concurrency", "3")
    assert done.returncode == 0, done.stderr
    documents = json.loads(done.stdout)
    assert {d["path"]: d["predictions"][0]["label"] for d in documents} == image_dir
    for document in documents:
        assert [set(p) for p in document["predictions"]] == [{"label", "index", "score"}] * 2


def test_a_bad_file_exits_1_and_its_line_shows_the_servers_message(
    demo_server: ServerProcess, image_dir: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff truncated")
    with ResnetClient(demo_server.url) as client, pytest.raises(ResnetServeError) as caught:
        client.predict(broken)

    done = predict(str(broken.parent), "--url", demo_server.url)
    assert done.returncode == 1
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert f"invalid_image: {caught.value.message}" in lines.pop(str(broken))
    assert {path: line.split()[1] for path, line in lines.items()} == image_dir
    assert done.stderr.strip() == f"1 of {len(image_dir) + 1} images failed"

    done = predict(str(broken), "--url", demo_server.url, "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == [
        {"path": str(broken), "error": {"code": "invalid_image", "message": caught.value.message}}
    ]


@pytest.mark.parametrize("as_json", [False, True])
def test_a_reader_that_closed_stdout_ends_the_command_quietly_with_141(
    demo_server: ServerProcess, image_dir: dict[str, str], as_json: bool
) -> None:
    """``resnet-serve predict ... | head -1``: no BrokenPipeError traceback, the shell's SIGPIPE
    status. The pipe's read end is closed before the command starts, so its write must fail."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        args = [*image_dir, "--url", demo_server.url, *(["--json"] if as_json else [])]
        done = subprocess.run(
            [str(CLI), "predict", *args],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_an_unreachable_server_exits_2_with_one_line_naming_the_url(
    image_dir: dict[str, str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = predict(*image_dir, "--url", url)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: cannot reach {url}: ")


def test_no_images_found_exits_2_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    assert main(["predict", str(tmp_path), "--url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == f"error: no images found in {tmp_path}\n"
    assert main(["predict", str(tmp_path / "missing.jpg")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_a_folder_is_classified_with_a_bundle_and_no_server_into_csv_and_json_lines(
    tmp_path: Path, image_dir: dict[str, str]
) -> None:
    folder = str(Path(next(iter(image_dir))).parent)
    (Path(folder) / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    bundle = str(REPO / "models" / "demo")
    done = predict(folder, "--bundle", bundle, "--output", str(tmp_path / "out.csv"))
    assert done.returncode == 1, done.stderr  # the broken file fails its own line only
    with (tmp_path / "out.csv").open(newline="") as file:
        rows = {row["path"]: row for row in csv.DictReader(file)}
    assert {path: rows[path]["label"] for path in image_dir} == image_dir
    broken = rows[str(Path(folder) / "broken.png")]
    assert broken["label"] == "" and broken["error"].startswith("invalid_image: ")
    done = predict(*image_dir, "--bundle", bundle, "--output", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert {
        json.loads(line)["path"]: json.loads(line)["predictions"][0]["label"] for line in lines
    } == image_dir


def test_a_missing_bundle_exits_2_with_one_line(tmp_path: Path, image_dir: dict[str, str]) -> None:
    done = predict(next(iter(image_dir)), "--bundle", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "nowhere" in done.stderr


def test_noise_abstains_with_the_bundles_threshold_in_the_table_csv_and_json_lines(
    tmp_path: Path,
) -> None:
    """Offline, as the server does: below the bundle's abstain threshold the answer is flagged."""
    pixels = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    noise, star = tmp_path / "noise.jpg", tmp_path / "star.jpg"
    Image.fromarray(pixels).save(noise, format="JPEG")
    star.write_bytes(encode(known_image("star", 1)))
    bundle = str(REPO / "models" / "demo")
    table = predict(str(noise), str(star), "--bundle", bundle)
    assert table.returncode == 0, table.stderr
    lines = {line.split()[0]: line for line in table.stdout.splitlines()}
    assert lines[str(noise)].endswith("(abstained)")
    assert lines[str(noise)].split()[1:4] == ["none", "of", "these"]  # the scores follow
    assert "abstained" not in lines[str(star)]
    done = predict(str(noise), str(star), "--bundle", bundle, "--output", str(tmp_path / "o.csv"))
    assert done.returncode == 0, done.stderr
    with (tmp_path / "o.csv").open(newline="") as file:
        assert {row["path"]: row["abstained"] for row in csv.DictReader(file)} == {
            str(noise): "true",
            str(star): "false",
        }
    done = predict(str(noise), "--bundle", bundle, "--output", str(tmp_path / "o.jsonl"))
    assert json.loads((tmp_path / "o.jsonl").read_text())["abstained"] is True
