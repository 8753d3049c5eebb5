"""The backbone registry: every entry honours the contract; names, weights and files fail loudly."""

from __future__ import annotations

import pickle

import pytest
import timm
import torch

import visionheads as vh
from visionheads.backbones import create_backbone, list_backbones, register_backbone

REQUIRED = {
    "resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "mobilenetv3_small_100", "mobilenetv3_large_100",
    "efficientnet_b0", "convnext_tiny", "densenet121", "inception_v3", "xception41", "alexnet", "lenet5", "simple_cnn",
}  # fmt: skip


def test_registry_holds_the_required_entries():
    assert REQUIRED <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


@pytest.mark.parametrize("name", sorted(REQUIRED))
@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_backbone_returns_declared_channels_fine_to_coarse(name, in_chans):
    backbone = create_backbone(name, in_chans=in_chans)
    size = max(64, backbone.min_input_size)
    feats = backbone(torch.randn(2, in_chans, size, size))
    assert [f.shape[1] for f in feats] == backbone.channels
    assert len(backbone.strides) == len(feats)
    sides = [f.shape[-1] for f in feats]
    assert sides == sorted(sides, reverse=True)  # fine to coarse
    for side, stride in zip(sides, backbone.strides, strict=False):
        assert side <= size // stride + 1


def test_unknown_name_suggests_the_closest():
    with pytest.raises(vh.ConfigError, match=r"did you mean 'resnet18'\?.*list_backbones"):
        create_backbone("resnt18")


def test_unknown_name_without_a_close_match_lists_all():
    with pytest.raises(vh.ConfigError, match="simple_cnn"):
        create_backbone("zzzzzzzz")


def test_registering_a_name_twice_raises():
    with pytest.raises(vh.ConfigError, match="already registered"):
        register_backbone("resnet18", lambda **kw: None)


def test_timm_passthrough_builds_any_timm_model():
    backbone = create_backbone("timm/resnet10t", in_chans=1)
    assert backbone.channels == timm.create_model("resnet10t", features_only=True).feature_info.channels()
    with pytest.raises(vh.ConfigError, match="unknown timm model"):
        create_backbone("timm/resnet10000")


@pytest.mark.parametrize("name", ["resnet18", "alexnet"])
def test_pretrained_tag_without_network_fails_with_the_way_out(name):
    # conftest points HF_HOME and TORCH_HOME at empty folders: no weights cache of this machine can make this pass.
    with pytest.raises(vh.ConfigError, match=r"pass its path instead.*weights="):
        create_backbone(name, weights="imagenet")


def test_small_bodies_have_no_pretrained_tag():
    with pytest.raises(vh.ConfigError, match=r"no weights tag 'imagenet' \(tags: none\)"):
        create_backbone("lenet5", weights="imagenet")


def test_local_timm_weights_file_loads_and_adapts_the_stem(tmp_path):
    full = timm.create_model("resnet18", num_classes=7)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": full.state_dict()}, path)
    backbone = create_backbone("resnet18", weights=path)
    assert torch.equal(backbone.body.conv1.weight, full.conv1.weight)
    grey = create_backbone("resnet18", weights=str(path), in_chans=1)
    assert torch.allclose(grey.body.conv1.weight, full.conv1.weight.sum(dim=1, keepdim=True))
    assert backbone.weights is not None and backbone.mean == backbone.weights.mean


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file

    source = create_backbone("simple_cnn", in_chans=1)
    path = tmp_path / "body.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_backbone("simple_cnn", in_chans=1, weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


class _Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_weights_file_holding_objects_is_refused_not_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as file:
        pickle.dump({"conv1.weight": _Exploit()}, file)
    with pytest.raises(vh.ConfigError, match="cannot read weights file"):
        create_backbone("resnet18", weights=path)
    assert "code ran" not in capsys.readouterr().out


def test_missing_weights_file_is_a_config_error(tmp_path):
    with pytest.raises(vh.ConfigError, match="does not exist"):
        create_backbone("resnet18", weights=tmp_path / "nope.pth")


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "lenet.pt"
    torch.save(create_backbone("lenet5").state_dict(), path)
    with pytest.raises(vh.ConfigError, match="does not fit backbone 'simple_cnn'"):
        create_backbone("simple_cnn", weights=path)


@pytest.mark.parametrize("name", vh.list_backbones())
def test_exactly_the_named_bodies_hand_over_max_pooling_indices(name, bodies):
    from visionheads.backbones import POOL_INDEXED_BACKBONES

    assert bodies(name).hands_pool_indices == (name in POOL_INDEXED_BACKBONES)
