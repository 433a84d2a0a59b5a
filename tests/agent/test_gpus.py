"""GPUReader and the Node patch over the fake NVML: models, memory, MIG, health rules, XIDs, no driver."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pynvml
import pytest
from fake_pynvml import FakeDevice, FakeNVML

from tenbin.agent.gpus import GPUReader, NoDriverError, NVMLInitError, gfd_product
from tenbin.agent.publish import HEALTH_ANNOTATION, gpu_patch, status_patch
from tenbin.gpumodels import canonical_model
from tenbin.inventory.model import UNHEALTHY_ANNOTATION

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def h100s(n: int = 8, **kw: object) -> FakeNVML:
    return FakeNVML([FakeDevice(**kw) for _ in range(n)])  # type: ignore[arg-type]


def opened(fake: FakeNVML) -> GPUReader:
    r = GPUReader(fake)
    r.open()
    return r


def test_eight_healthy_h100s() -> None:
    gpus = opened(h100s()).read()
    assert len(gpus) == 8
    g = gpus[0]
    assert (g.index, g.uuid, g.name, g.memory_mib) == (0, "GPU-fake-0000", "NVIDIA H100 80GB HBM3", 81559)
    assert g.mig_capable and not g.mig_enabled and g.mig_devices == 0
    assert g.ecc_uncorrected == 0 and g.healthy and g.problems == ()


@pytest.mark.parametrize(("name", "product", "canonical"), [
    ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3", "H100-80GB"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB", "A100-80GB"),
    ("NVIDIA H100 PCIe", "NVIDIA-H100-PCIe", "H100-80GB"),
    ("Tesla T4", "Tesla-T4", "T4-16GB"),
    ("NVIDIA L40S", "NVIDIA-L40S", "L40S-48GB"),
    ("  odd/name (rev 2)  ", "odd-name-rev-2", "odd-name-rev-2"),
])
def test_gfd_product_names_map_to_canonical_models(name: str, product: str, canonical: str) -> None:
    assert gfd_product(name) == product
    assert canonical_model(gfd_product(name)) == canonical


def test_gfd_product_is_a_valid_label_value() -> None:
    assert len(gfd_product("X" * 100)) == 63
    assert gfd_product("---") == "unknown"


def test_mig_enabled_counts_instances() -> None:
    fake = h100s(2)
    fake.update(1, mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE, mig_devices=3)
    gpus = opened(fake).read()
    assert (gpus[0].mig_enabled, gpus[0].mig_devices) == (False, 0)
    assert (gpus[1].mig_enabled, gpus[1].mig_devices) == (True, 3)


def test_not_supported_queries_are_unknown_not_unhealthy() -> None:
    fake = FakeNVML([FakeDevice(name="Tesla T4", memory_mib=15360, mig_capable=False, ecc_supported=False,
                                remapped_rows=None)])
    (g,) = opened(fake).read()
    assert g.healthy and not g.mig_capable and g.ecc_uncorrected is None


@pytest.mark.parametrize(("change", "problem"), [
    ({"ecc_uncorrected_volatile": 2}, "2 uncorrectable ECC error(s) since the driver loaded"),
    ({"page_retirement_supported": True, "retired_pages_pending": True}, "retired memory pages pending a GPU reset"),
    ({"remapped_rows": (0, 1, 1, 0)}, "row remapping pending a GPU reset"),
    ({"remapped_rows": (0, 1, 0, 1)}, "row remapping failed"),
    ({"lost": True}, "GPU is lost"),
])
def test_health_rules(change: dict[str, object], problem: str) -> None:
    fake = h100s(2)
    fake.update(1, **change)
    gpus = opened(fake).read()
    assert gpus[0].healthy
    assert gpus[1].problems == (problem,)


def test_corrected_ecc_errors_are_not_a_problem() -> None:
    fake = h100s(1)
    fake.update(0, ecc_corrected_volatile=1000)
    assert opened(fake).read()[0].healthy


def test_critical_xid_is_sticky_application_xid_is_ignored() -> None:
    fake = h100s(4)
    r = opened(fake)
    fake.inject_xid(1, 79)
    fake.inject_xid(2, 31)  # application page fault
    gpus = r.read()
    assert [g.healthy for g in gpus] == [True, False, True, True]
    assert gpus[1].problems == ("critical XID 79",)
    assert not r.read()[1].healthy  # the event is consumed, the verdict stays
    fake.inject_xid(1, 48)
    assert r.read()[1].problems == ("critical XID 48, 79",)


def test_ignored_xids_are_configurable() -> None:
    fake = h100s(1)
    r = GPUReader(fake, ignored_xids=frozenset({79}))
    r.open()
    fake.inject_xid(0, 79)
    fake.inject_xid(0, 31)
    assert r.read()[0].problems == ("critical XID 31",)


def test_events_registered_once_and_freed_on_close() -> None:
    fake = h100s(2)
    r = opened(fake)
    r.close()
    assert fake.calls == ["nvmlInit", "nvmlShutdown"] and not fake.initialized
    r.close()  # idempotent


@pytest.mark.parametrize(("driver", "exc", "text"), [
    ("missing", NoDriverError, "NVML Shared Library Not Found"),
    ("not_loaded", NoDriverError, "Driver Not Loaded"),
    ("no_permission", NVMLInitError, "Insufficient Permissions"),
])
def test_init_failures(driver: str, exc: type[Exception], text: str) -> None:
    r = GPUReader(FakeNVML(driver=driver))  # type: ignore[arg-type]
    with pytest.raises(exc, match=text):
        r.open()
    r.close()  # nothing to close, no error


def test_real_pynvml_without_driver_is_no_driver() -> None:
    with pytest.raises(NoDriverError, match="NVML Shared Library Not Found"):
        GPUReader(pynvml).open()


def test_gpu_patch_labels_and_annotations() -> None:
    fake = h100s(8)
    fake.update(3, ecc_uncorrected_volatile=1)
    body = gpu_patch(opened(fake).read(), NOW, driver_version="570.86.15")
    meta = body["metadata"]
    assert meta["labels"] == {
        "nvidia.com/gpu.present": "true", "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559",
        "nvidia.com/mig.capable": "true",
    }
    assert meta["annotations"][UNHEALTHY_ANNOTATION] == "1"
    health = json.loads(meta["annotations"][HEALTH_ANNOTATION])
    assert (health["status"], health["count"], health["unhealthy"], health["time"], health["driverVersion"]) == \
        ("Degraded", 8, 1, "2026-01-02T03:04:05Z", "570.86.15")
    assert health["gpus"][3]["problems"] == ["1 uncorrectable ECC error(s) since the driver loaded"]
    assert health["gpus"][0] == {
        "index": 0, "uuid": "GPU-fake-0000", "name": "NVIDIA H100 80GB HBM3", "memoryMiB": 81559,
        "mig": {"capable": True, "enabled": False, "devices": 0}, "eccUncorrected": 0, "healthy": True,
        "problems": [],
    }


def test_gpu_patch_without_node_labels_and_without_gpus() -> None:
    assert "labels" not in gpu_patch(opened(h100s(2)).read(), NOW, node_labels=False)["metadata"]
    meta = gpu_patch([], NOW)["metadata"]
    assert meta["labels"] == {"nvidia.com/gpu.present": "false", "nvidia.com/gpu.count": "0"}
    assert json.loads(meta["annotations"][HEALTH_ANNOTATION])["status"] == "NoGPUs"


def test_mixed_models_named_in_health_message() -> None:
    fake = FakeNVML([FakeDevice(), FakeDevice(name="NVIDIA H200", memory_mib=143771)])
    health = json.loads(gpu_patch(opened(fake).read(), NOW)["metadata"]["annotations"][HEALTH_ANNOTATION])
    assert health["message"] == "mixed GPU models on one node: NVIDIA H100 80GB HBM3, NVIDIA H200"


def test_status_patch_touches_only_the_health_annotation() -> None:
    body = status_patch("NoDriver", "no NVIDIA driver: x", NOW)
    assert list(body["metadata"]) == ["annotations"]
    assert list(body["metadata"]["annotations"]) == [HEALTH_ANNOTATION]
