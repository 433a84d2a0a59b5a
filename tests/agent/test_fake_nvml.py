"""The fake NVML keeps pynvml's contract: names, signatures, return shapes, real error classes and codes."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import fake_pynvml
import pynvml
import pytest
from fake_pynvml import FakeDevice, FakeNVML

USED = ["nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
        "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetIndex", "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetMigMode", "nvmlDeviceGetMaxMigDeviceCount", "nvmlDeviceGetMigDeviceHandleByIndex",
        "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetRemappedRows",
        "nvmlEventSetCreate", "nvmlDeviceRegisterEvents", "nvmlEventSetWait", "nvmlEventSetFree"]


@pytest.mark.parametrize("name", USED)
def test_same_parameters_as_pynvml(name: str) -> None:
    real = list(inspect.signature(getattr(pynvml, name)).parameters)
    fake = list(inspect.signature(getattr(FakeNVML(), name)).parameters)
    assert fake == real


def test_errors_are_the_real_pynvml_classes_with_real_codes() -> None:
    fake = FakeNVML([FakeDevice()])
    with pytest.raises(pynvml.NVMLError_Uninitialized) as e:
        fake.nvmlDeviceGetCount()
    assert e.value.value == pynvml.NVML_ERROR_UNINITIALIZED
    fake.nvmlInit()
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(1)
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)  # MIG disabled: no instances
    s = fake.nvmlEventSetCreate()
    with pytest.raises(pynvml.NVMLError_Timeout) as t:
        fake.nvmlEventSetWait(s, 0)
    assert str(t.value) == "Timeout"
    fake.update(0, lost=True)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        fake.nvmlDeviceGetName(h)
    fake.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlShutdown()


def test_return_shapes_match_pynvml() -> None:
    fake = FakeNVML([FakeDevice(memory_used_mib=1000)])
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    mem = fake.nvmlDeviceGetMemoryInfo(h)
    assert isinstance(mem, pynvml.c_nvmlMemory_t)
    assert (mem.total, mem.used, mem.free) == (81559 * 2**20, 1000 * 2**20, 80559 * 2**20)
    assert isinstance(fake.nvmlDeviceGetName(h), str)  # pynvml decodes bytes to str
    assert fake.nvmlDeviceGetMigMode(h) == [pynvml.NVML_DEVICE_MIG_DISABLE, pynvml.NVML_DEVICE_MIG_DISABLE]
    assert fake.nvmlDeviceGetRemappedRows(h) == (0, 0, 0, 0)
    assert fake.NVML_ERROR_TIMEOUT == pynvml.NVML_ERROR_TIMEOUT and fake.NVMLError is pynvml.NVMLError


def test_module_level_api_reads_its_config_from_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "nvml.json"
    cfg.write_text(json.dumps({"devices": [{"name": "NVIDIA H200", "memory_mib": 143771, "count": 4}]}))
    code = ("import fake_pynvml as n; n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(3); "
            "print(n.nvmlDeviceGetCount(), n.nvmlDeviceGetName(h), n.nvmlDeviceGetUUID(h)); n.nvmlShutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                         cwd=Path(fake_pynvml.__file__).parent, env={"FAKE_NVML_CONFIG": str(cfg), "PATH": ""})
    assert out.stdout.split() == ["4", "NVIDIA", "H200", "GPU-fake-0003"]


def test_module_without_config_has_no_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_NVML_CONFIG", raising=False)
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        fake_pynvml._from_env().nvmlInit()
