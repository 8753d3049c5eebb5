"""Weights files for a backbone: what does not fit is listed, a partial match needs strict=False, a file is
recorded as the file, timm's wrapped names load, and a file of Python objects is refused in one line."""

from __future__ import annotations

import pytest

import visionheads as vh


def test_weights_of_another_architecture_list_missing_and_unexpected_tensors(tmp_path):
    import torch

    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    for name in ("lenet5", "resnet18"):  # timm loaded such a file without a word before (features_only is lenient)
        with pytest.raises(vh.ConfigError) as caught:
            vh.Task("classification", backbone=name, weights=path)
        message = str(caught.value)
        assert f"does not fit backbone {name!r}" in message and str(path) in message
        assert "not in the file (" in message and "in the file are not in the body (weight, bias)" in message
        assert "nothing in it fits" in message


def test_a_partial_match_needs_strict_false_which_says_what_it_loaded(tmp_path, capsys):
    import torch

    from visionheads.backbones import create_backbone

    source = create_backbone("simple_cnn", in_chans=1)
    kept = {k: v for k, v in source.body.state_dict().items() if not k.startswith("stages.3.")}
    path = tmp_path / "three_stages.pt"
    torch.save(kept, path)
    with pytest.raises(vh.ConfigError, match=r"not in the file \(stages\.3\..*pass strict=False to load the \d+ that"):
        create_backbone("simple_cnn", in_chans=1, weights=path)
    loaded = vh.Task("classification", backbone="simple_cnn", in_chans=1, weights=path, strict=False)
    said = capsys.readouterr().err
    body = loaded.model.body.body.state_dict()
    assert f"loaded {len([k for k in kept if 'num_batches' not in k])} of" in said and "strict=False" in said
    assert all(torch.equal(body[key], value) for key, value in kept.items())
    assert not torch.equal(body["stages.3.0.0.weight"], source.body.state_dict()["stages.3.0.0.weight"])


def test_a_local_file_is_recorded_as_the_file_never_as_imagenet(tmp_path):
    import timm
    import torch

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=5).state_dict(), path)  # its classifier is skipped
    task = vh.Task("classification", backbone="resnet18", weights=path, num_classes=3, image_size=32)
    assert task.config.pretrained == str(path)
    assert task.model.body.weights.tag == "file" and task.model.body.weights.source == str(path)


def test_wrapped_names_of_timm_features_and_whole_networks_both_load(tmp_path):
    import timm
    import torch

    from visionheads.backbones import create_backbone

    # timm's feature wrapper of VGG says features_0.*, the whole network features.0.*: a file of either fits.
    whole = timm.create_model("vgg11_bn", num_classes=4)
    torch.save(whole.state_dict(), tmp_path / "whole.pt")
    body = create_backbone("vgg11_bn", weights=tmp_path / "whole.pt")
    assert torch.equal(body.body.state_dict()["features_0.weight"], whole.state_dict()["features.0.weight"])
    torch.save(body.state_dict(), tmp_path / "body.pt")
    again = create_backbone("vgg11_bn", weights=tmp_path / "body.pt")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in body.state_dict().items())


# ----- resume: checked before anything in the run folder is touched -----------------------------------------------


def test_a_weights_file_of_python_objects_is_one_line_without_torchs_advice_to_unpickle_it(tmp_path):
    import pickle

    path = tmp_path / "objects.pt"
    path.write_bytes(pickle.dumps({"conv1.weight": print}))  # a callable: torch's weights_only refuses it
    with pytest.raises(vh.ConfigError) as caught:
        vh.Task("classification", backbone="lenet5", weights=path)
    message = str(caught.value)
    assert "holds Python objects" in message and len(message.splitlines()) == 1
    assert "weights_only" not in message and "will likely succeed" not in message
