"""``hf://`` sources, offline: a Hugging Face Hub cache built by the test (no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tileuq
from tileuq.models.hub import parse_hf

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TILES = np.random.default_rng(2).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, tileuq.TileModel]:
    """A Hub cache holding ``org/models`` with a model under ``tiny/``, as the Hub lays it out."""
    cache = tmp_path / "hub"
    repo = cache / "models--org--models"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    model = tileuq.build_model("deterministic", "resnet_slim", num_classes=2, tile_px=48)
    model.save(repo / "snapshots" / COMMIT / "tiny")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache, model


def test_offline_load_from_the_local_cache(hub_cache: tuple[Path, tileuq.TileModel]) -> None:
    pytest.importorskip("huggingface_hub")
    _, model = hub_cache
    loaded = tileuq.load_model("hf://org/models/tiny")
    assert loaded.model_hash == model.model_hash
    assert torch.equal(loaded.predict(TILES)["logits"], model.predict(TILES)["logits"])
    pinned = tileuq.load_model(f"hf://org/models@{COMMIT}/tiny")
    assert pinned.model_hash == model.model_hash


def test_cache_lookup_without_huggingface_hub(
    hub_cache: tuple[Path, tileuq.TileModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    _, model = hub_cache
    assert tileuq.load_model("hf://org/models/tiny").model_hash == model.model_hash
    with pytest.raises(tileuq.ModelError, match="huggingface_hub is not installed"):
        tileuq.load_model("hf://org/models/other")


def test_missing_model_offline_gives_a_clear_error(
    hub_cache: tuple[Path, tileuq.TileModel],
) -> None:
    with pytest.raises(
        tileuq.ModelError, match=r"not found in the local Hugging Face cache.*offline"
    ):
        tileuq.load_model("hf://org/models/absent")
    with pytest.raises(tileuq.ModelError, match="offline"):
        tileuq.load_model("hf://org/unknown-repo/tiny")


@pytest.mark.parametrize("uri", ["hf://only-owner", "hf://org/models/../x", "hf://org/mo dels/x"])
def test_invalid_uris(uri: str) -> None:
    with pytest.raises(tileuq.ModelError):
        parse_hf(uri)


def test_parse() -> None:
    assert parse_hf("hf://nirschl-lab/sngp-models/wong_sngp_resnet18") == (
        "nirschl-lab/sngp-models",
        None,
        "wong_sngp_resnet18",
    )
    assert parse_hf("hf://a/b@v1.0/c/d") == ("a/b", "v1.0", "c/d")
