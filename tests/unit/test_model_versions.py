"""Model folders as one bundle or numbered versions, repositories of them, and the version policy
and batch limits of a model's config.json (app.serving.versions, app.serving.model_config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.model.bundle import BundleError
from app.serving import builder
from app.serving.builder import model_folders, repository_root
from app.serving.model_config import VersionPolicy, read_model_config
from app.serving.versions import (
    fingerprint,
    is_versioned,
    repository_models,
    served_versions,
    version_dirs,
)
from app.settings import Settings

LATEST = VersionPolicy()


def _bundle(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.json").write_text("{}")
    return path


def test_a_plain_bundle_is_version_1(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "demo")
    assert not is_versioned(bundle)
    assert served_versions(bundle, LATEST) == {1: bundle}


def test_the_highest_numbered_folder_holding_a_bundle_is_served(tmp_path: Path) -> None:
    model = tmp_path / "shapes"
    one, ten = _bundle(model / "1"), _bundle(model / "10")
    _bundle(model / "0")  # not a version: Triton's start at 1
    _bundle(model / ".11.partial")  # still being written
    (model / "12").mkdir()  # no bundle in it yet
    _bundle(model / "v13")
    assert version_dirs(model) == {1: one, 10: ten}
    assert served_versions(model, LATEST) == {10: ten}


def test_a_folder_with_neither_is_refused_in_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no model\.json, and no numbered version folder"):
        served_versions(tmp_path / "empty", LATEST)


def test_a_missing_folder_is_left_to_the_bundle_loader(tmp_path: Path) -> None:
    assert served_versions(tmp_path / "missing", LATEST) == {1: tmp_path / "missing"}


def test_the_fingerprint_changes_when_a_file_is_replaced(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "1")
    before = fingerprint(bundle)
    (bundle / "model.safetensors").write_bytes(b"weights")
    assert fingerprint(bundle) != before


def _versions(model: Path, *numbers: int) -> dict[int, Path]:
    return {number: _bundle(model / str(number)) for number in numbers}


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ({}, [5]),
        ({"latest": {"num_versions": 2}}, [5, 3]),
        ({"latest": {"num_versions": 9}}, [5, 3, 1]),
        ({"specific": {"versions": [1, 3, 7]}}, [3, 1]),
        ({"all": {}}, [5, 3, 1]),
    ],
)
def test_the_version_policy_selects_versions_as_tritons_does(
    tmp_path: Path, policy: dict, served: list[int]
) -> None:
    found = _versions(tmp_path / "shapes", 1, 3, 5)
    selected = served_versions(tmp_path / "shapes", VersionPolicy.model_validate(policy))
    assert selected == {number: found[number] for number in served}


def test_a_policy_that_selects_nothing_is_refused_naming_the_versions(tmp_path: Path) -> None:
    _versions(tmp_path / "shapes", 1, 2)
    policy = VersionPolicy.model_validate({"specific": {"versions": [4]}})
    with pytest.raises(BundleError, match="selects none of versions 1, 2"):
        served_versions(tmp_path / "shapes", policy)


def test_a_policy_names_one_kind(tmp_path: Path) -> None:
    model = tmp_path / "shapes"
    model.mkdir()
    (model / "config.json").write_text('{"version_policy": {"latest": {}, "all": {}}}')
    with pytest.raises(BundleError, match=r"config\.json: version_policy: .*not latest and all"):
        read_model_config(model)


def test_config_json_gives_a_model_its_own_batch_limits(tmp_path: Path) -> None:
    model = tmp_path / "shapes"
    model.mkdir()
    assert read_model_config(model).apply(Settings()) == Settings()  # no file: the server's
    (model / "config.json").write_text('{"max_batch_size": 4, "max_batch_delay_ms": 1}')
    settings = read_model_config(model).apply(Settings(max_batch_size=32))
    assert (settings.max_batch_size, settings.max_batch_delay_ms) == (4, 1)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{", "not JSON"),
        ('{"max_batch_size": 0}', "max_batch_size: Input should be greater than or equal to 1"),
        ('{"batch": 4}', "batch: Extra inputs are not permitted"),
    ],
)
def test_a_bad_config_json_is_refused_in_one_sentence_naming_it(
    tmp_path: Path, text: str, error: str
) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(BundleError, match=f"config\\.json: .*{error}"):
        read_model_config(tmp_path)


def test_a_repository_holds_the_model_folders_by_name(tmp_path: Path) -> None:
    shapes = tmp_path / "shapes"
    _versions(shapes, 1)
    textures = _bundle(tmp_path / "textures")
    _bundle(tmp_path / ".staging")  # hidden: being written
    (tmp_path / "empty").mkdir()  # neither a bundle nor versions
    (tmp_path / "notes.txt").write_text("")
    assert repository_models(tmp_path) == {"shapes": shapes, "textures": textures}
    assert repository_models(tmp_path / "missing") == {}


@pytest.fixture
def kserve_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where KServe would mount a storageUri (/mnt/models), here a folder of the test's own."""
    mount = tmp_path / "mnt-models"
    mount.mkdir()
    monkeypatch.setattr(builder, "KSERVE_MODEL_MOUNT", mount)
    return mount


def test_without_a_repository_model_dir_is_the_one_model(
    tmp_path: Path, kserve_mount: Path
) -> None:
    _bundle(kserve_mount / "1")  # not looked at: KServe gave no STORAGE_URI
    settings = Settings(model_dir=tmp_path / "demo")
    assert model_folders(settings) == {None: tmp_path / "demo"}
    assert repository_root(settings) is None


def test_kserves_storage_mount_is_found_by_itself(
    kserve_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_URI", "pvc://models/shapes")
    _bundle(kserve_mount / "1")
    assert model_folders(Settings()) == {None: kserve_mount}  # one model's versions


def test_a_repository_on_kserves_mount_serves_each_model_by_its_folder(
    kserve_mount: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_URI", "gs://bucket/repository")
    shapes, textures = _bundle(kserve_mount / "shapes"), _bundle(kserve_mount / "textures" / "3")
    assert model_folders(Settings()) == {"shapes": shapes, "textures": textures.parent}
    assert repository_root(Settings()) == kserve_mount


def test_model_repository_wins_over_kserves_mount(tmp_path: Path, kserve_mount: Path) -> None:
    _bundle(kserve_mount / "1")
    tiny = _bundle(tmp_path / "repository" / "tiny")
    settings = Settings(model_repository=tmp_path / "repository", storage_uri="pvc://x")
    assert model_folders(settings) == {"tiny": tiny}


def test_an_empty_repository_stops_start_up_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no model folder .* in the model repository"):
        model_folders(Settings(model_repository=tmp_path))
