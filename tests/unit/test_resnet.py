"""Our ResNet family against torchvision's: same parameters, same names, same outputs."""

import pytest
import torch
import torchvision

from app.model.resnet import BasicBlock, Bottleneck, build_resnet

ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


@pytest.mark.parametrize("arch", ARCHS)
def test_torchvision_state_dict_loads_strictly_and_gives_same_logits(arch: str) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None, num_classes=10).eval()
    ours = build_resnet(arch, num_classes=10).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    for size in (64, 97):
        images = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            diff = (ours(images) - reference(images)).abs().max().item()
        assert diff <= 1e-4, f"{arch} at {size}px differs by {diff}"


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_and_names_equal_torchvision(arch: str) -> None:
    reference = getattr(torchvision.models, arch)(weights=None)
    ours = build_resnet(arch)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_known_parameter_counts_at_1000_classes() -> None:
    assert sum(p.numel() for p in build_resnet("resnet18").parameters()) == 11_689_512
    assert sum(p.numel() for p in build_resnet("resnet50").parameters()) == 25_557_032


def test_blocks_declare_expansion() -> None:
    assert BasicBlock.expansion == 1
    assert Bottleneck.expansion == 4
    assert build_resnet("resnet50").fc.in_features == 2048


def test_zero_init_residual_zeroes_last_bn_of_every_block() -> None:
    model = build_resnet("resnet50", zero_init_residual=True)
    last_bns = [m.bn3 for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(last_bns) == 16
    assert all(torch.count_nonzero(bn.weight) == 0 for bn in last_bns)


def test_features_and_head_split_matches_forward() -> None:
    model = build_resnet("resnet18", num_classes=3).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        features = model.forward_features(images)
        assert features.shape == (1, 512)
        torch.testing.assert_close(model.forward_head(features), model(images))


def test_reset_classifier_changes_output_width() -> None:
    model = build_resnet("resnet18")
    model.reset_classifier(7)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize("bad", [{"arch": "resnet20"}, {"arch": "resnet18", "num_classes": 0}])
def test_bad_builder_arguments_raise_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        build_resnet(**bad)
