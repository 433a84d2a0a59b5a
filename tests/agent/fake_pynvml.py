"""A fake NVML with pynvml's function names, signatures, return shapes and error semantics.

Only the GPUs are fake. Constants, ``NVMLError`` and its per-code subclasses and the ``c_nvmlMemory_t``
structure are the real ones from the installed ``pynvml`` (nvidia-ml-py), so ``except
pynvml.NVMLError_NotSupported`` and ``err.value == pynvml.NVML_ERROR_TIMEOUT`` behave exactly as with a driver.

Two ways in:

* an instance, ``FakeNVML([FakeDevice(...), ...])``, handed to the agent (``Agent(nvml=fake)``); the test keeps
  the instance and changes device health between loop iterations;
* this module itself, ``tenbin agent --nvml-module fake_pynvml`` (with this directory on PYTHONPATH): its
  module-level functions serve the devices described by the JSON file named in ``$FAKE_NVML_CONFIG``,
  e.g. ``{"driver": "ok", "devices": [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "count": 8}]}``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import pynvml
from pynvml import (  # the real constants and error classes
    NVML_AGGREGATE_ECC,
    NVML_DEVICE_MIG_DISABLE,
    NVML_DEVICE_MIG_ENABLE,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_FOUND,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_TIMEOUT,
    NVML_ERROR_UNINITIALIZED,
    NVML_FEATURE_DISABLED,
    NVML_FEATURE_ENABLED,
    NVML_MEMORY_ERROR_TYPE_CORRECTED,
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
    NVML_VOLATILE_ECC,
    NVMLError,
    c_nvmlMemory_t,
    nvmlEventTypeXidCriticalError,
)

__all__ = [
    "NVML_AGGREGATE_ECC",
    "NVML_DEVICE_MIG_DISABLE",
    "NVML_DEVICE_MIG_ENABLE",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_TIMEOUT",
    "NVML_MEMORY_ERROR_TYPE_CORRECTED",
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED",
    "NVML_VOLATILE_ECC",
    "FakeDevice",
    "FakeNVML",
    "NVMLError",
    "nvmlEventTypeXidCriticalError",
]

Driver = Literal["ok", "missing", "not_loaded", "no_permission"]
MIB = 1024 * 1024


@dataclass
class FakeDevice:
    name: str = "NVIDIA H100 80GB HBM3"
    memory_mib: int = 81559
    uuid: str = ""
    mig_capable: bool = True
    mig_mode: int = NVML_DEVICE_MIG_DISABLE
    mig_devices: int = 0  # MIG instances that exist (only with mig_mode enabled)
    max_mig_devices: int = 7
    ecc_supported: bool = True
    ecc_uncorrected_volatile: int = 0
    ecc_corrected_volatile: int = 0
    page_retirement_supported: bool = False  # Ampere and later remap rows instead
    retired_pages_pending: bool = False
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)  # corr, unc, pending, failure
    lost: bool = False  # "GPU has fallen off the bus": every query fails with GPU_IS_LOST
    memory_used_mib: int = 0


@dataclass(frozen=True)
class FakeHandle:
    index: int
    mig_index: int | None = None


@dataclass
class FakeEventSet:
    devices: dict[int, int] = field(default_factory=dict)  # device index -> registered event mask
    freed: bool = False


@dataclass(frozen=True)
class FakeEventData:
    """Same fields as pynvml.c_nvmlEventData_t."""

    device: FakeHandle
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


def _err(code: int) -> NVMLError:
    return NVMLError(code)  # NVMLError.__new__ maps the code to its subclass, as pynvml does


class FakeNVML:
    """The NVML functions the agent uses, over configurable devices. Thread-safe (the test mutates it)."""

    # re-export the real constants and classes as attributes, like the pynvml module has them
    NVMLError = NVMLError

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("NVML_", "NVMLError_", "nvmlEventType")):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def __init__(self, devices: list[FakeDevice] | None = None, driver: Driver = "ok") -> None:
        self.devices = list(devices or [])
        for i, d in enumerate(self.devices):
            if not d.uuid:
                d.uuid = f"GPU-fake-{i:04d}"
        self.driver: Driver = driver
        self._refcount = 0
        self._lock = threading.RLock()
        self._events: deque[FakeEventData] = deque()
        self._sets: list[FakeEventSet] = []
        self.calls: list[str] = []

    # ---- test controls ---------------------------------------------------------------------------------

    def inject_xid(self, index: int, xid: int) -> None:
        """An XID error on device ``index``, delivered to event sets that registered for critical XIDs."""
        with self._lock:
            if any(s.devices.get(index, 0) & nvmlEventTypeXidCriticalError for s in self._sets if not s.freed):
                self._events.append(FakeEventData(FakeHandle(index), nvmlEventTypeXidCriticalError, xid))

    def update(self, index: int, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self.devices[index], k, v)

    @property
    def initialized(self) -> bool:
        return self._refcount > 0

    # ---- helpers -------------------------------------------------------------------------------------

    def _check_init(self) -> None:
        if self._refcount <= 0:
            raise _err(NVML_ERROR_UNINITIALIZED)

    def _dev(self, handle: Any) -> FakeDevice:
        self._check_init()
        if not isinstance(handle, FakeHandle) or not 0 <= handle.index < len(self.devices):
            raise _err(NVML_ERROR_INVALID_ARGUMENT)
        d = self.devices[handle.index]
        if d.lost:
            raise _err(NVML_ERROR_GPU_IS_LOST)
        return d

    # ---- init / shutdown -----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        with self._lock:
            self.calls.append("nvmlInit")
            if self.driver == "missing":
                raise _err(NVML_ERROR_LIBRARY_NOT_FOUND)
            if self.driver == "not_loaded":
                raise _err(NVML_ERROR_DRIVER_NOT_LOADED)
            if self.driver == "no_permission":
                raise _err(NVML_ERROR_NO_PERMISSION)
            self._refcount += 1

    def nvmlShutdown(self) -> None:
        with self._lock:
            self.calls.append("nvmlShutdown")
            self._check_init()
            self._refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return "570.86.15"

    # ---- devices -------------------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        with self._lock:
            self._check_init()
            return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        with self._lock:
            self._check_init()
            if not 0 <= index < len(self.devices):
                raise _err(NVML_ERROR_INVALID_ARGUMENT)
            if self.devices[index].lost:
                raise _err(NVML_ERROR_GPU_IS_LOST)
            return FakeHandle(index)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        with self._lock:
            return self._dev(handle).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        with self._lock:
            return self._dev(handle).uuid

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:
        with self._lock:
            self._dev(handle)
            return handle.index

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> c_nvmlMemory_t:
        with self._lock:
            d = self._dev(handle)
            total, used = d.memory_mib * MIB, d.memory_used_mib * MIB
            return c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetMigMode(self, device: FakeHandle) -> list[int]:
        with self._lock:
            d = self._dev(device)
            if not d.mig_capable:
                raise _err(NVML_ERROR_NOT_SUPPORTED)
            return [d.mig_mode, d.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: FakeHandle) -> int:
        with self._lock:
            d = self._dev(device)
            if not d.mig_capable:
                raise _err(NVML_ERROR_NOT_SUPPORTED)
            return d.max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: FakeHandle, index: int) -> FakeHandle:
        with self._lock:
            d = self._dev(device)
            if not d.mig_capable:
                raise _err(NVML_ERROR_NOT_SUPPORTED)
            if not 0 <= index < d.max_mig_devices:
                raise _err(NVML_ERROR_INVALID_ARGUMENT)
            if d.mig_mode != NVML_DEVICE_MIG_ENABLE or index >= d.mig_devices:
                raise _err(NVML_ERROR_NOT_FOUND)
            return FakeHandle(device.index, index)

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeHandle, errorType: int, counterType: int) -> int:
        with self._lock:
            d = self._dev(handle)
            if not d.ecc_supported:
                raise _err(NVML_ERROR_NOT_SUPPORTED)
            if errorType not in (NVML_MEMORY_ERROR_TYPE_CORRECTED, NVML_MEMORY_ERROR_TYPE_UNCORRECTED) or \
                    counterType not in (NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC):
                raise _err(NVML_ERROR_INVALID_ARGUMENT)
            n = d.ecc_uncorrected_volatile if errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED \
                else d.ecc_corrected_volatile
            return n  # the fake's aggregate counter equals the volatile one

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: FakeHandle) -> int:
        with self._lock:
            d = self._dev(device)
            if not d.page_retirement_supported:
                raise _err(NVML_ERROR_NOT_SUPPORTED)
            return NVML_FEATURE_ENABLED if d.retired_pages_pending else NVML_FEATURE_DISABLED

    def nvmlDeviceGetRemappedRows(self, device: FakeHandle) -> tuple[int, int, int, int]:
        with self._lock:
            d = self._dev(device)
            if d.remapped_rows is None:
                raise _err(NVML_ERROR_NOT_SUPPORTED)
            return d.remapped_rows

    # ---- events ----------------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> FakeEventSet:
        with self._lock:
            self._check_init()
            s = FakeEventSet()
            self._sets.append(s)
            return s

    def nvmlDeviceRegisterEvents(self, handle: FakeHandle, eventTypes: int, eventSet: FakeEventSet) -> None:
        with self._lock:
            self._dev(handle)
            if eventSet.freed:
                raise _err(NVML_ERROR_INVALID_ARGUMENT)
            eventSet.devices[handle.index] = eventSet.devices.get(handle.index, 0) | eventTypes

    def nvmlEventSetWait(self, eventSet: FakeEventSet, timeoutms: int) -> FakeEventData:
        """Never blocks: with nothing queued it fails with NVML_ERROR_TIMEOUT, as NVML does after timeoutms."""
        with self._lock:
            self._check_init()
            if eventSet.freed:
                raise _err(NVML_ERROR_INVALID_ARGUMENT)
            if not self._events:
                raise _err(NVML_ERROR_TIMEOUT)
            return self._events.popleft()

    def nvmlEventSetFree(self, eventSet: FakeEventSet) -> None:
        with self._lock:
            self._check_init()
            eventSet.freed = True


# ---- module-level API (for --nvml-module fake_pynvml) ------------------------------------------------------


def _from_env() -> FakeNVML:
    path = os.environ.get("FAKE_NVML_CONFIG")
    if not path:
        return FakeNVML(driver="missing")
    with open(path) as f:
        cfg = json.load(f)
    devices: list[FakeDevice] = []
    for spec in cfg.get("devices", []):
        spec = dict(spec)
        for _ in range(int(spec.pop("count", 1))):
            devices.append(FakeDevice(**{**spec, "uuid": ""}))
    return FakeNVML(devices, driver=cfg.get("driver", "ok"))


_default = _from_env()


def __getattr__(name: str) -> Any:  # module-level: nvml* functions of the env-configured instance
    if name.startswith("nvml"):
        return getattr(_default, name)
    raise AttributeError(name)
