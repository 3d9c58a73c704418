"""`device=auto` picks CUDA, then Apple's MPS, then the CPU. CI runs Linux without a GPU: availability
is faked here; the choice, and what the loader does with it, is the real code."""

from __future__ import annotations

import signal

import pytest
import torch

from framepack_api import hardware
from framepack_api.backends.framepack.loader import resolve_device
from framepack_api.settings import Settings
from framepack_api.worker.supervisor import death_reason


@pytest.mark.parametrize(("cuda", "mps", "expected"), [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_choose_device_prefers_cuda_then_mps_then_cpu(cuda: bool, mps: bool, expected: str) -> None:
    assert hardware.choose_device(cuda, mps) == expected


def test_the_loader_puts_a_real_preset_on_mps_when_only_mps_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cuda_available", lambda: False)
    monkeypatch.setattr(hardware, "mps_available", lambda: True)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert resolve_device(settings, "framepack") == torch.device("mps")
    # the tiny model stays on the CPU unless a device is named
    assert resolve_device(settings, "tiny") == torch.device("cpu")
    assert resolve_device(Settings(device="cpu", _env_file=None), "framepack") == torch.device("cpu")  # type: ignore[call-arg]
    monkeypatch.setattr(hardware, "cuda_available", lambda: True)
    assert resolve_device(settings, "framepack") == torch.device("cuda")


def test_mps_probe_answers_on_this_machine() -> None:
    # Linux CI: the probe runs against the installed torch and says no, without raising.
    hardware.mps_available.cache_clear()
    assert hardware.mps_available() is bool(torch.backends.mps.is_available())


def test_death_reason_without_sigkill_as_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(signal, "SIGKILL")
    assert "likely out of memory" in death_reason(9)
    assert "signal 15" in death_reason(15)
