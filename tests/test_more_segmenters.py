"""HRNet-OCR, CrackFormer, SCNet and the identity SR: layout vs the authors' checkpoints, golden forwards,
registry entries, tiny forwards and a few training steps."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_model_matrix import TINY_SEG
from torch import nn
from torch.nn import functional as F

from csbsr_cli.nets.crackformer import CrackFormer
from csbsr_cli.nets.hrnet_ocr import HRNetOCR
from csbsr_cli.nets.identity import IdentitySR
from csbsr_cli.nets.joint import JointModel
from csbsr_cli.nets.kbpn import KBPN
from csbsr_cli.nets.pspnet import PSPNet
from csbsr_cli.nets.scnet import SCNet, SobelEdges
from csbsr_cli.nets.types import SegOutput
from csbsr_cli.registry import Registry, build_network
from csbsr_cli.train.config import LossConfig
from csbsr_cli.train.models import resolve_seg_loss

# One intra-op thread: the golden fixtures were made that way, and the cores are shared.
pytestmark = pytest.mark.usefixtures("one_thread")

PREFIX = "segmentation_model."
FULL: dict[str, tuple[Callable[[], nn.Module], str, int]] = {
    "hrnet-ocr": (HRNetOCR, "manifest_csbsr_hrnet_ocr.json", 74_499_970),
    "crackformer": (CrackFormer, "manifest_csbsr_crackformer.json", 4_961_691),
}
# Module classes whose extra_repr fixes what shapes cannot show (stride, padding, groups, eps, dropout p).
HYPER_CLASSES = {"Conv2d", "BatchNorm2d", "GroupNorm", "Dropout", "Dropout2d"}

TINY_KBPN = {"num_stages": 2, "width": 8, "feat_widths": [4, 4, 8, 8]}
NEW_ENTRIES = {  # registry name -> (segmenter type, scale)
    "csbsr-hrnet-ocr": ("hrnet-ocr", 4),
    "csbsr-crackformer": ("crackformer", 4),
    "csbsr-scnet": ("scnet", 4),
    "scnet": ("scnet", 1),
}


def _manifest(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / name).read_text())


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _load_npz(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a fixture into (weights, keys keeping their ``sr_model.``/``segmentation_model.`` prefix; other
    arrays)."""
    with np.load(path) as z:
        weights = {k: torch.from_numpy(z[k]) for k in z.files if "." in k}
        arrays = {k: torch.from_numpy(z[k]) for k in z.files if "." not in k}
    return weights, arrays


def _max_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape
    return (ours - ref).abs().max().item()


# ---------------------------------------------------------------------------------------------------------
# Structure (full width on the meta device)


@pytest.mark.parametrize("name", list(FULL))
def test_state_dict_matches_manifest(fixtures_dir: Path, name: str) -> None:
    factory, manifest_name, _ = FULL[name]
    entries = _manifest(fixtures_dir, manifest_name)["entries"]
    expected = [(k[len(PREFIX) :], shape, dtype) for k, shape, dtype in entries if k.startswith(PREFIX)]
    with torch.device("meta"):
        state = factory().state_dict()
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    assert ours == expected  # keys, their order, shapes and dtypes


@pytest.mark.parametrize("name", list(FULL))
def test_hyperparameters_match_manifest(fixtures_dir: Path, name: str) -> None:
    """Every conv / norm / dropout leaf, in registration order, with the authors' extra_repr. Parameter-free
    modules the authors register but we apply functionally (ReLU, GELU, pools) are not compared."""
    factory, manifest_name, _ = FULL[name]
    leaves = _manifest(fixtures_dir, manifest_name)["leaf_modules"]
    expected = [[p[len(PREFIX) :], c, r] for p, c, r in leaves if p.startswith(PREFIX) and c in HYPER_CLASSES]
    with torch.device("meta"):
        model = factory()
    ours = [
        [n, type(m).__name__, m.extra_repr()]
        for n, m in model.named_modules()
        if type(m).__name__ in HYPER_CLASSES
    ]
    assert ours == expected


@pytest.mark.parametrize("name", list(FULL))
def test_parameter_count(name: str) -> None:
    factory, _, count = FULL[name]
    with torch.device("meta"):
        assert _n_params(factory()) == count


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("csbsr-hrnet-ocr", (135_658_533, 61_158_563, 74_499_970)),
        ("csbsr-crackformer", (66_120_254, 61_158_563, 4_961_691)),
    ],
)
def test_registry_param_counts_equal_the_authors(name: str, counts: tuple[int, int, int]) -> None:
    with torch.device("meta"):
        model = build_network(Registry().get(name))
    assert (_n_params(model), _n_params(model.sr_model), _n_params(model.segmentation_model)) == counts


def test_scnet_size_is_the_papers() -> None:
    """Paper Table VII: 29.46 M with VGG-16 widths (ours 29.47 M with the edge channel, 29.469 M without)."""
    with torch.device("meta"):
        assert _n_params(SCNet()) == 29_469_683
        assert _n_params(SCNet(edge_prior=False)) == 29_469_107


def test_class_facts() -> None:
    assert (HRNetOCR.divisor, HRNetOCR.global_context, HRNetOCR.receptive_field) == (32, True, None)
    assert (CrackFormer.divisor, CrackFormer.global_context, CrackFormer.receptive_field) == (16, True, None)
    assert (SCNet.divisor, SCNet.global_context, SCNet.receptive_field) == (32, True, None)
    assert not (HRNetOCR.uses_kernel or CrackFormer.uses_kernel or SCNet.uses_kernel)
    assert (HRNetOCR.aux_weight, CrackFormer.aux_weight, SCNet.aux_weight) == (0.4, 2.0, 3.5)
    assert SCNet.default_loss == "focal-iou" and sum(SCNet.side_weights) == SCNet.aux_weight
    assert IdentitySR.scale == 1


def test_seg_loss_auto_follows_the_segmenter() -> None:
    """loss.seg "auto" (the default): SCNet's focal-iou with its side weights, bc for the others; an explicit
    loss wins, and only SCNet's focal-iou gets per-side weights."""
    with torch.device("meta"):
        scnet, pspnet, crackformer = SCNet(), PSPNet(), CrackFormer()
    assert LossConfig().seg == "auto"
    assert resolve_seg_loss(LossConfig().seg, scnet) == ("focal-iou", (0.5, 0.75, 1.0, 0.75, 0.5))
    assert resolve_seg_loss("auto", pspnet) == ("bc", None)
    assert resolve_seg_loss("auto", crackformer) == ("bc", None)
    assert resolve_seg_loss("dice", scnet) == ("dice", None)
    assert resolve_seg_loss("focal-iou", scnet) == ("focal-iou", SCNet.side_weights)
    assert resolve_seg_loss("focal-iou", pspnet) == ("focal-iou", None)


# ---------------------------------------------------------------------------------------------------------
# Golden forwards (authors' code, random weights; README section 2c/2d: atol 5e-5 on sigmoid outputs)


def test_crackformer_golden(fixtures_dir: Path) -> None:
    weights, arrays = _load_npz(fixtures_dir / "fwd_crackformer.npz")
    model = CrackFormer().eval()
    model.load_state_dict({k[len(PREFIX) :]: v for k, v in weights.items()}, strict=True)
    with torch.inference_mode():
        out = model(arrays["input"])
    assert _max_diff(out.prob, arrays["main"]) <= 5e-5
    assert _max_diff(out.aux, arrays["sides"]) <= 5e-5


def test_joint_kbpn_crackformer_golden(fixtures_dir: Path) -> None:
    sr_weights, _ = _load_npz(fixtures_dir / "fwd_kbpn_md16.npz")
    seg_weights, _ = _load_npz(fixtures_dir / "fwd_crackformer.npz")
    _, ref = _load_npz(fixtures_dir / "fwd_joint_kbpn_md16_crackformer.npz")
    model = JointModel(KBPN(width=16, feat_widths=(8, 8, 16, 16)), CrackFormer(), sr_norm="instance").eval()
    model.load_state_dict({**sr_weights, **seg_weights}, strict=True)
    with torch.inference_mode():
        out = model(ref["input_lr"])
        normalised = model.normalise(out.sr)
    assert _max_diff(out.sr, ref["sr"]) <= 1e-5 * ref["sr"].abs().max().item()
    assert _max_diff(normalised, ref["sr_normalized"]) <= 1e-5 * ref["sr_normalized"].abs().max().item()
    # CrackFormer's max-unpool moves a value one pixel over when the SR's last bits flip a near-tie in
    # its max-pool (nets/crackformer.py): 5.7e-5 on an AMD EPYC build, below 5e-5 on the previous CI host.
    assert _max_diff(out.prob, ref["seg"]) <= 1e-4
    assert _max_diff(out.aux, ref["seg_sides"]) <= 1e-4
    assert _max_diff(out.kernel, ref["kernel"]) <= 1e-7


# ---------------------------------------------------------------------------------------------------------
# Tiny models: behaviour


def _tiny(name: str) -> nn.Module:
    kind, _ = NEW_ENTRIES[name]
    spec = Registry().get(name)
    config = {**spec.config, "segmenter": {**spec.config["segmenter"], **TINY_SEG[kind]}}
    if spec.sr_type == "kbpn":
        config["sr"] = {**spec.config["sr"], **TINY_KBPN}
    return build_network(replace(spec, config=config))


def _check_probs(x: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    assert x is not None and x.shape == shape
    assert x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("name", list(NEW_ENTRIES))
def test_tiny_entry_trains(name: str) -> None:
    """A few Adam steps on one synthetic batch with BCE (main + aux_weight * aux): finite, the loss on that
    batch goes down and both the segmenter's and (if any) the SR net's weights move."""
    _, scale = NEW_ENTRIES[name]
    torch.manual_seed(0)
    model = _tiny(name).train()
    lr = torch.rand(2, 3, 32 // scale, 32 // scale)
    target = torch.zeros(2, 1, 32, 32)
    target[..., 14:18, :] = 1.0  # a horizontal "crack"
    aux_weight = model.segmentation_model.aux_weight
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_now() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks for every evaluation
        out = model(lr)
        aux = F.binary_cross_entropy(out.aux, target.expand_as(out.aux))
        return F.binary_cross_entropy(out.prob, target) + aux_weight * aux

    losses = []
    for _ in range(5):
        optimiser.zero_grad()
        loss = loss_now()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(loss_now().item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    moved = {k.split(".")[0] for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert moved == ({"segmentation_model"} if scale == 1 else {"sr_model", "segmentation_model"})


def test_hrnet_any_size_returns_input_size() -> None:
    model = HRNetOCR(**TINY_SEG["hrnet-ocr"]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 56))
    assert isinstance(out, SegOutput)
    _check_probs(out.prob, (1, 1, 40, 56))
    _check_probs(out.aux, (1, 1, 40, 56))  # the aux head runs in eval mode too


def test_crackformer_size_check_and_unused_third_blocks() -> None:
    """Levels 3-5 run their second block twice (as the authors' code); the stored third block is inert."""
    torch.manual_seed(0)
    model = CrackFormer(**TINY_SEG["crackformer"]).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        ref = model(x)
        for level in (model.down3, model.down4, model.down5):
            for p in level.nn3.parameters():
                p.add_(1.0)
        assert torch.equal(model(x).prob, ref.prob)
        with pytest.raises(ValueError, match="divisible by 16"):
            model(torch.randn(1, 3, 40, 48))


def test_crackformer_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = CrackFormer(**TINY_SEG["crackformer"])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).prob, model(x).prob)
        model.train()
        torch.manual_seed(1)
        a = model(x).prob
        torch.manual_seed(2)
        assert not torch.equal(a, model(x).prob)


def test_sobel_edges_mark_steps_only() -> None:
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:] = 1.0  # a vertical unit step between columns 7 and 8
    edges = SobelEdges(threshold=0.4)(x)
    assert edges.shape == (1, 1, 16, 16)
    assert torch.equal(edges[0, 0].nonzero()[:, 1].unique(), torch.tensor([7, 8]))
    assert not SobelEdges(threshold=0.6)(x).any()  # the step's magnitude is 0.5


def test_scnet_edge_prior_is_a_function_of_the_image() -> None:
    """No edge buffer in the state dict (nothing to ship), and the edge channel changes the output."""
    torch.manual_seed(0)
    with_edges = SCNet(**TINY_SEG["scnet"]).eval()
    assert not any("edge" in k for k in with_edges.state_dict())
    assert with_edges.encoder[0][0][0].in_channels == 4
    assert SCNet(**TINY_SEG["scnet"], edge_prior=False).encoder[0][0][0].in_channels == 3
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = with_edges(x).prob
        with_edges.edges.threshold = float("inf")  # an empty edge map
        b = with_edges(x).prob
    assert not torch.equal(a, b)


def test_scnet_any_size() -> None:
    model = SCNet(**TINY_SEG["scnet"]).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 56))
    _check_probs(out.prob, (1, 1, 40, 56))
    _check_probs(out.aux, (1, 5, 40, 56))
