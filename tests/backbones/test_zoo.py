"""The architecture zoo: `describe_backbones` states what each registered backbone is, `list backbones --details`
prints it, and docs/backbones.md holds its table.

Each backbone is built once (conftest's `bodies`) and its FLOPs counted once at 96 px; resnet18 also at 224.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import visionheads as vh
from visionheads import _names
from visionheads.backbones import WeightsInfo, describe_backbone, describe_backbones, format_zoo, weights_cached, zoo
from visionheads.cli import main

SMALL = 96  # at least every built-in backbone's smallest input (inception_v3: 75) and a multiple of 32
DOCS = Path(__file__).resolve().parents[2] / "docs" / "backbones.md"


@pytest.fixture(scope="module")
def rows(bodies):
    return {name: describe_backbone(name, image_size=SMALL, backbone=bodies(name)) for name in _names.BACKBONES}


@pytest.mark.parametrize("name", _names.BACKBONES)
def test_each_row_states_its_backbone(name, rows, bodies):
    row, backbone = rows[name], bodies(name)
    assert row.name == name and row.image_size == SMALL
    assert row.params == sum(p.numel() for p in backbone.parameters())
    assert list(row.channels) == backbone.channels and list(row.strides) == backbone.strides
    assert row.gflops > 0


def test_resnet18_costs_what_timm_publishes(bodies):
    # timm lists resnet18 at 1.82 GMACs at 224 px; FlopCounterMode counts 2 FLOPs per multiply-add.
    row = describe_backbone("resnet18", backbone=bodies("resnet18"))
    assert row.image_size == 224 and 3.0 < row.gflops < 4.0
    assert row.weights_source.startswith("hf-hub:timm/resnet18.") and row.weights_license == "apache-2.0"
    assert row.weights_offline is False  # conftest's caches are empty


def test_flops_follow_the_image_area(rows, bodies):
    full = describe_backbone("resnet18", image_size=224, backbone=bodies("resnet18"))
    assert rows["resnet18"].gflops == pytest.approx(full.gflops * (SMALL / 224) ** 2, rel=1e-6)


def test_small_nets_have_no_published_weights(rows, bodies):
    row = describe_backbone("lenet5", backbone=bodies("lenet5"))
    assert row.image_size == bodies("lenet5").input_size == 32
    assert (row.weights_source, row.weights_license, row.weights_offline) == ("none", "none", None)


def test_a_size_below_the_backbone_minimum_is_a_config_error(bodies):
    with pytest.raises(vh.ConfigError, match=r"image_size=64 is below what backbone 'inception_v3' accepts \(75\)"):
        describe_backbone("inception_v3", image_size=64, backbone=bodies("inception_v3"))


def test_weights_cached_finds_hub_and_torchvision_files_and_never_raises(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = WeightsInfo(tag="imagenet", source="hf-hub:timm/resnet18.a1_in1k", license="apache-2.0")
    url = WeightsInfo(tag="imagenet", source="https://download.pytorch.org/models/alexnet-x.pth", license="bsd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not weights_cached(hub) and not weights_cached(url) and not weights_cached(None)
    assert not weights_cached(WeightsInfo(tag="imagenet", source="hf-hub:not a//repo id", license="?"))

    repo = tmp_path / "hf" / "models--timm--resnet18.a1_in1k"  # huggingface_hub's cache layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "snapshots" / "0123abc" / "model.safetensors").write_bytes(b"")
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-x.pth").write_bytes(b"")
    assert weights_cached(hub) and weights_cached(url)


def test_the_table_names_its_flop_convention(rows):
    text = format_zoo(rows.values())
    assert "FlopCounterMode" in text and "a multiply-add is 2 FLOPs" in text
    assert list(_table(text)) == list(rows)


def test_describe_backbones_walks_the_names_and_reports_progress():
    said = []
    described = describe_backbones(["lenet5", "simple_cnn"], image_size=SMALL, progress=said.append)
    assert [row.name for row in described] == ["lenet5", "simple_cnn"]
    assert said == ["[1/2] lenet5", "[2/2] simple_cnn"]


def test_list_backbones_details_prints_a_row_per_backbone(rows, monkeypatch, capsys):
    # The command's own path, each row from the fixture: building and counting all again would double this file's time.
    monkeypatch.setattr(zoo, "describe_backbone", lambda name, **_: rows[name])
    assert main(["list", "backbones", "--details"]) == 0
    out, err = capsys.readouterr()
    table = _table(out)
    assert list(table) == vh.list_backbones()
    assert all(table[name]["params"] == f"{rows[name].params:,}" for name in _names.BACKBONES)
    assert f"building [1/{len(rows)}] alexnet" in err  # progress goes to stderr, the table alone to stdout


def test_details_describe_backbones_only(capsys):
    assert main(["list", "tasks", "--details"]) == 2
    assert "--details describes backbones only" in capsys.readouterr().err


def test_the_docs_table_lists_every_backbone_with_its_size(rows):
    table = _table(DOCS.read_text())
    assert sorted(table) == sorted(_names.BACKBONES)
    for name, row in rows.items():
        assert table[name]["params"] == f"{row.params:,}", name
        assert table[name]["channels"] == "/".join(map(str, row.channels)), name
        assert table[name]["strides"] == "/".join(map(str, row.strides)), name
    assert "visionheads list backbones --details" in DOCS.read_text()


def _table(text: str) -> dict[str, dict[str, str]]:
    """The zoo table in `text` (the one whose header starts `| name | params`) as name -> column -> cell."""
    lines = iter(text.splitlines())
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:2] == ["name", "params"]:
            columns = cells
            break
    else:
        raise AssertionError("no zoo table found")
    next(lines)  # the alignment rule
    table = {}
    for line in lines:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        table[cells[0]] = dict(zip(columns, cells, strict=True))
    return table
