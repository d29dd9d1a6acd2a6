"""One meaning of "auto" for devices and precision, one record of versions, for inference and training."""

from __future__ import annotations

import pytest
import torch

from csbsr_cli.errors import DeviceError
from csbsr_cli.infer.device import resolve_device, resolve_precision, versions

CPU = torch.device("cpu")


def test_auto_on_a_cpu_is_fp32_for_inference_and_training():
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("auto", CPU, training=True) is None
    assert resolve_precision("off", CPU, training=True) is None and resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU, training=True) == torch.bfloat16


def test_fp16_on_a_cpu_is_refused_for_training_too():
    for training in (False, True):
        with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
            resolve_precision("fp16", CPU, training=training)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answers")
def test_device_auto_and_ranks_without_cuda():
    assert resolve_device("auto") == CPU and resolve_device(" CPU ", local_rank=1) == CPU
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda", local_rank=0)
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("mps")


def test_versions_name_every_library_an_output_depends_on():
    assert set(versions()) == {"csbsr", "python", "torch", "numpy", "opencv"}
