"""Registry, model cards, weights files and checkpoint import."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from csbsr_cli.cli.app import app
from csbsr_cli.errors import ModelError
from csbsr_cli.registry import BUILTINS, Registry, build_network
from csbsr_cli.weights import load_model, sha256_file

runner = CliRunner()

# The authors' parameter counts (csbsr-reference.md section 2 and the fixture manifests).
AUTHORS_PARAMS = {
    "csbsr-pspnet": (89_249_704, 61_158_563, 28_091_141),
    "csbsr-pspnet-blurskip": (99_670_388, 61_158_563, 38_511_825),
    "csbsr-unet16": (90_658_596, 61_158_563, 29_500_033),
    "cssr-pspnet": (33_669_283, 5_578_142, 28_091_141),
}

TINY_CARD = {
    "name": "tiny",
    "arch": "csbsr-pspnet",
    "config": {
        "sr": {"num_stages": 2, "width": 8, "feat_widths": [4, 4, 8, 8]},
        "segmenter": {
            "base_width": 4,
            "blocks": [1, 1, 1, 1],
            "psp_out": 8,
            "up_widths": [8, 4, 4],
            "aux_width": 4,
        },
    },
}


def _meta_state(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_network(Registry().get(name)).state_dict()


@pytest.mark.parametrize("name", sorted(AUTHORS_PARAMS))
def test_param_counts_equal_the_authors(name: str) -> None:
    result = runner.invoke(app, ["models", "info", name])
    assert result.exit_code == 0, result.output
    params = json.loads(result.output)["params"]
    assert (params["total"], params["sr_model"], params["segmentation_model"]) == AUTHORS_PARAMS[name]


@pytest.mark.parametrize("name", [s.name for s in BUILTINS if s.manifest])
def test_state_dict_equals_manifest(name: str, fixtures_dir: Path) -> None:
    spec = Registry().get(name)
    manifest = json.loads((fixtures_dir / spec.manifest).read_text())
    expected = {key: tuple(shape) for key, shape, _ in manifest["entries"]}
    got = {k: tuple(v.shape) for k, v in _meta_state(name).items()}
    assert got == expected


def test_models_list_shows_every_builtin() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for spec in BUILTINS:
        assert spec.name in result.output


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        Registry().get("nope")


def test_a_mistyped_model_name_gets_a_did_you_mean() -> None:
    with pytest.raises(ModelError, match="did you mean 'csbsr-lite'"):
        Registry().resolve("csbsr-lit")
    with pytest.raises(ModelError) as nothing_close:
        Registry().resolve("zzzz")
    assert "did you mean" not in str(nothing_close.value)


@pytest.fixture
def tiny_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user models directory holding a tiny derived architecture, found through $CSBSR_MODELS."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.json").write_text(json.dumps(TINY_CARD))
    monkeypatch.setenv("CSBSR_MODELS", str(models))
    return models


def _authors_checkpoint(path: Path, spec_name: str = "tiny") -> dict[str, torch.Tensor]:
    """A checkpoint as the authors save it under DataParallel: a plain state dict with `module.` prefixes."""
    torch.manual_seed(0)
    state = build_network(Registry().get(spec_name)).state_dict()
    state = {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in state.items()}
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return state


def test_import_round_trip_and_usable_by_name(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "latest.pth"
    state = _authors_checkpoint(ckpt)
    result = runner.invoke(app, ["models", "import", str(ckpt), "--arch", "tiny", "--name", "mine"])
    assert result.exit_code == 0, result.output
    assert (tiny_dir / "mine.safetensors").is_file()
    spec = Registry().get("mine")
    assert spec.weights is not None and spec.weights.sha256 == sha256_file(tiny_dir / "mine.safetensors")
    model = load_model(spec)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert runner.invoke(app, ["models", "verify", "mine"]).exit_code == 0
    # usable by name: it appears in the shared registry listing
    assert "mine" in runner.invoke(app, ["models", "list"]).output


def _cli_error(args: list[str]) -> tuple[int, str]:
    """Run the real entry point (one-line error + exit code), not Typer's test runner."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from csbsr_cli.cli.app import main; main()", *args],
        capture_output=True,
        text=True,
    )
    return proc.returncode, proc.stderr.strip()


def test_truncated_checkpoint_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "latest.pth"
    _authors_checkpoint(ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    code, err = _cli_error(["models", "import", str(ckpt), "--arch", "tiny", "--name", "mine"])
    assert code == 2
    assert len(err.splitlines()) == 1 and str(ckpt) in err and "Traceback" not in err
    assert not (tiny_dir / "mine.safetensors").exists()


def test_wrong_architecture_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "latest.pth"
    _authors_checkpoint(ckpt)
    code, err = _cli_error(["models", "import", str(ckpt), "--arch", "cssr-pspnet", "--name", "mine"])
    assert code == 2
    assert len(err.splitlines()) == 1 and "does not match architecture cssr-pspnet" in err
    assert "missing" in err and "unexpected" in err
    assert not (tiny_dir / "mine.json").exists()


def test_tampered_weights_are_refused(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "latest.pth"
    _authors_checkpoint(ckpt)
    assert (
        runner.invoke(app, ["models", "import", str(ckpt), "--arch", "tiny", "--name", "mine"]).exit_code == 0
    )
    weights = tiny_dir / "mine.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, err = _cli_error(["models", "verify", "mine"])
    assert code == 2
    assert len(err.splitlines()) == 1 and "sha256" in err and "refused" in err


def test_pickled_objects_are_never_unpickled(tiny_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "payload": Path("/")}, ckpt)  # a non-tensor object
    code, err = _cli_error(["models", "import", str(ckpt), "--arch", "tiny", "--name", "mine"])
    assert code == 2 and ("refused" in err or "not a state dict" in err)


def test_full_size_authors_checkpoint_from_manifest_imports(fixtures_dir: Path, tmp_path: Path) -> None:
    """A checkpoint with every key and shape of the authors' manifest (random values) imports as is."""
    manifest = json.loads((fixtures_dir / "manifest_csbsr_pspnet.json").read_text())
    gen = torch.Generator().manual_seed(0)
    state = {
        key: (
            torch.randint(0, 100, shape, generator=gen)
            if dtype == "int64"
            else torch.randn(shape, generator=gen)
        )
        for key, shape, dtype in manifest["entries"]
    }
    ckpt = tmp_path / "latest.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, ckpt)
    out = tmp_path / "models"
    result = runner.invoke(
        app,
        ["models", "import", str(ckpt), "--arch", "csbsr-pspnet", "--name", "paper", "--out-dir", str(out)],
    )
    assert result.exit_code == 0, result.output
    spec = Registry([out]).get("paper")
    model = load_model(spec)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_card_overrides_merge_into_the_builtin_config(tiny_dir: Path) -> None:
    spec = Registry().get("tiny")
    base = Registry().get("csbsr-pspnet")
    assert spec.config["sr"]["width"] == 8 and spec.config["sr"]["k_est"] == base.config["sr"]["k_est"]
    assert spec.base == "csbsr-pspnet" and replace(spec, name="x").name == "x"


def test_a_card_may_shadow_a_builtin_name_without_hiding_the_architecture(tmp_path: Path) -> None:
    """The zoo's trained csbsr-lite is a card named like its arch: other cards and imports still see the
    architecture itself, and a checkpoint cannot be imported under a built-in name."""
    shadow = {"name": "csbsr-lite", "arch": "csbsr-lite", "threshold": 0.9}
    (tmp_path / "csbsr-lite.json").write_text(json.dumps(shadow))
    (tmp_path / "mine.json").write_text(json.dumps({"name": "mine", "arch": "csbsr-lite"}))
    registry = Registry([tmp_path])
    assert registry.get("csbsr-lite").threshold == 0.9 and registry.get("csbsr-lite").source != "built-in"
    assert registry.get("mine").threshold == 0.5  # the architecture's, not the shadowing card's
    assert registry.resolve(tmp_path / "mine.json").base == "csbsr-lite"
    checkpoint = tmp_path / "w.safetensors"
    checkpoint.write_bytes(b"")
    result = CliRunner().invoke(
        app, ["models", "import", str(checkpoint), "--arch", "csbsr-lite", "--name", "csbsr-lite",
              "--models-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code != 0 and "built-in" in str(result.exception or result.output)


def test_a_run_folder_stands_for_the_card_its_result_names(tmp_path: Path) -> None:
    """registry.folder_card: result.json's card wherever it was exported; once the run folder has moved (the
    named card is gone), the card in its models/; the weights-file rule needs the architecture."""
    exported = tmp_path / "elsewhere"
    exported.mkdir()
    (exported / "tiny.json").write_text(json.dumps(TINY_CARD))
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "result.json").write_text(
        json.dumps({"status": "completed", "model_card": str(exported / "tiny.json")})
    )
    registry = Registry()
    assert registry.resolve(run).source == str(exported / "tiny.json")
    (run / "models" / "tiny.json").write_text(json.dumps(TINY_CARD))
    (exported / "tiny.json").unlink()
    assert registry.resolve(run).source == str(run / "models" / "tiny.json")
    weights = tmp_path / "w.pth"
    torch.save(build_network(registry.resolve(run)).state_dict(), weights)
    with pytest.raises(ModelError, match="needs a model card"):
        registry.resolve(weights)
    spec = Registry([run / "models"]).resolve(weights, arch="tiny")
    assert spec.weights is not None and spec.weights.sha256 == sha256_file(weights) and spec.name == "tiny"
    assert load_model(spec, require_weights=True) is not None
