"""Read every GPU of this node through NVML (pynvml or anything with the same functions) and judge its health.

The NVML binding is a parameter: the real ``pynvml`` module in production, a fake with the same function
names and error classes in tests. Constants and ``NVMLError`` are read from that binding too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tenbin.agent")

# XIDs caused by the application, not the GPU (NVIDIA's k8s-device-plugin skips the same ones by default).
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
MAX_EVENTS_PER_READ = 1000
MAX_PROBLEMS = 8


class NoDriverError(Exception):
    """NVML cannot be used because there is no (working) NVIDIA driver on this node."""


class NVMLInitError(Exception):
    """NVML failed to initialise for another reason (permissions, an unknown error)."""


class _GPULost(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _no_driver_codes(nvml: Any) -> set[int]:
    names = ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH")
    return {int(getattr(nvml, n)) for n in names if hasattr(nvml, n)}


def nvml_error_text(e: BaseException) -> str:
    """pynvml's own text for an NVMLError (its __str__ can itself fail when the library is missing)."""
    try:
        text = str(e)
    except Exception:  # pragma: no cover - defensive: NVMLError.__str__ calls into the library
        text = ""
    code = getattr(e, "value", None)
    return text or (f"NVML error {code}" if code is not None else type(e).__name__)


@dataclass(frozen=True)
class GPUInfo:
    """One GPU as NVML reports it, with the reasons (if any) it is unhealthy."""

    index: int
    uuid: str | None = None
    name: str | None = None
    memory_mib: int | None = None
    mig_capable: bool = False
    mig_enabled: bool = False
    mig_devices: int = 0
    ecc_uncorrected: int | None = None  # volatile: since the driver loaded
    problems: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "uuid": self.uuid, "name": self.name, "memoryMiB": self.memory_mib,
            "mig": {"capable": self.mig_capable, "enabled": self.mig_enabled, "devices": self.mig_devices},
            "eccUncorrected": self.ecc_uncorrected, "healthy": self.healthy, "problems": list(self.problems),
        }


def gfd_product(name: str) -> str:
    """The ``nvidia.com/gpu.product`` value GPU Feature Discovery derives from an NVML device name:
    spaces become dashes (``NVIDIA H100 80GB HBM3`` -> ``NVIDIA-H100-80GB-HBM3``), made a valid label value."""
    v = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip())
    v = v[:63].strip("-_.")
    return v or "unknown"


@dataclass
class GPUReader:
    """Opens NVML once, then reads all GPUs on each call to :meth:`read`. Sticky XIDs: a GPU that reported a
    critical XID stays unhealthy until the agent restarts (as NVIDIA's device plugin does)."""

    nvml: Any
    ignored_xids: frozenset[int] = APPLICATION_XIDS
    _event_set: Any = None
    _xids: dict[str, list[int]] = field(default_factory=dict)  # uuid (or "#index") -> critical XIDs seen
    _open: bool = False

    def _err_cls(self) -> type[BaseException]:
        cls = getattr(self.nvml, "NVMLError", None)
        return cls if isinstance(cls, type) and issubclass(cls, BaseException) else Exception

    def _code(self, name: str) -> int | None:
        v = getattr(self.nvml, name, None)
        return int(v) if v is not None else None

    def _is(self, e: BaseException, name: str) -> bool:
        code = self._code(name)
        return code is not None and getattr(e, "value", None) == code

    # ---- lifecycle -------------------------------------------------------------------------------------

    def open(self) -> None:
        """nvmlInit and XID event registration. Raises NoDriverError or NVMLInitError."""
        err = self._err_cls()
        try:
            self.nvml.nvmlInit()
        except err as e:
            if getattr(e, "value", None) in _no_driver_codes(self.nvml):
                raise NoDriverError(nvml_error_text(e)) from None
            raise NVMLInitError(nvml_error_text(e)) from None
        self._open = True
        self._register_events()

    def close(self) -> None:
        if not self._open:
            return
        err = self._err_cls()
        if self._event_set is not None:
            try:
                self.nvml.nvmlEventSetFree(self._event_set)
            except err as e:
                log.debug("nvmlEventSetFree: %s", nvml_error_text(e))
            self._event_set = None
        try:
            self.nvml.nvmlShutdown()
        except err as e:
            log.debug("nvmlShutdown: %s", nvml_error_text(e))
        self._open = False

    def _register_events(self) -> None:
        err = self._err_cls()
        xid_mask = getattr(self.nvml, "nvmlEventTypeXidCriticalError", None)
        if xid_mask is None:
            return
        try:
            self._event_set = self.nvml.nvmlEventSetCreate()
            n = self.nvml.nvmlDeviceGetCount()
        except err as e:
            log.info("XID events unavailable: %s", nvml_error_text(e))
            self._event_set = None
            return
        for i in range(n):
            try:
                self.nvml.nvmlDeviceRegisterEvents(self.nvml.nvmlDeviceGetHandleByIndex(i), xid_mask, self._event_set)
            except err as e:  # e.g. NOT_SUPPORTED on some boards: no XID events from this GPU
                log.info("XID events unavailable on GPU %d: %s", i, nvml_error_text(e))

    # ---- reading -----------------------------------------------------------------------------------------

    def _drain_events(self) -> None:
        if self._event_set is None:
            return
        err = self._err_cls()
        xid_mask = int(getattr(self.nvml, "nvmlEventTypeXidCriticalError", 0))
        for _ in range(MAX_EVENTS_PER_READ):
            try:
                ev = self.nvml.nvmlEventSetWait(self._event_set, 0)
            except err as e:
                if not self._is(e, "NVML_ERROR_TIMEOUT"):
                    log.info("reading XID events: %s", nvml_error_text(e))
                return
            if not int(ev.eventType) & xid_mask:
                continue
            xid = int(ev.eventData)
            try:
                key = str(self.nvml.nvmlDeviceGetUUID(ev.device))
            except err:
                key = "#unknown"
            if xid in self.ignored_xids:
                log.info("application XID %d on %s (GPU stays healthy)", xid, key)
                continue
            log.warning("critical XID %d on %s", xid, key)
            self._xids.setdefault(key, []).append(xid)

    def _call(self, problems: list[str], what: str, fn: Any, *args: Any) -> Any:
        """One NVML query: NOT_SUPPORTED -> None; any other NVML error -> None and a health problem."""
        try:
            return fn(*args)
        except self._err_cls() as e:
            if self._is(e, "NVML_ERROR_NOT_SUPPORTED"):
                return None
            if self._is(e, "NVML_ERROR_GPU_IS_LOST"):
                raise _GPULost(nvml_error_text(e)) from None
            problems.append(f"{what}: {nvml_error_text(e)}")
            return None

    def _mig_instances(self, handle: Any, problems: list[str]) -> int:
        err = self._err_cls()
        maximum = self._call(problems, "MIG device count", self.nvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0
        count = 0
        for i in range(int(maximum)):
            try:
                self.nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)
                count += 1
            except err as e:
                if not self._is(e, "NVML_ERROR_NOT_FOUND"):  # NOT_FOUND: no instance in this slot
                    problems.append(f"MIG device {i}: {nvml_error_text(e)}")
        return count

    def read_one(self, index: int) -> GPUInfo:
        try:
            return self._read_one(index)
        except _GPULost as e:
            return GPUInfo(index=index, problems=(e.text,))

    def _read_one(self, index: int) -> GPUInfo:
        n = self.nvml
        problems: list[str] = []
        try:
            h = n.nvmlDeviceGetHandleByIndex(index)
        except self._err_cls() as e:
            return GPUInfo(index=index, problems=(nvml_error_text(e),))
        uuid = self._call(problems, "UUID", n.nvmlDeviceGetUUID, h)
        name = self._call(problems, "name", n.nvmlDeviceGetName, h)
        mem = self._call(problems, "memory", n.nvmlDeviceGetMemoryInfo, h)
        memory_mib = int(mem.total) // (1024 * 1024) if mem is not None else None
        mig = self._call(problems, "MIG mode", n.nvmlDeviceGetMigMode, h)
        mig_enabled = bool(mig is not None and int(mig[0]) == int(getattr(n, "NVML_DEVICE_MIG_ENABLE", 1)))
        mig_devices = self._mig_instances(h, problems) if mig_enabled else 0
        ecc = self._call(problems, "ECC errors", n.nvmlDeviceGetTotalEccErrors, h,
                         n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC)
        if ecc:
            problems.append(f"{int(ecc)} uncorrectable ECC error(s) since the driver loaded")
        pending = self._call(problems, "retired pages", n.nvmlDeviceGetRetiredPagesPendingStatus, h)
        if pending:
            problems.append("retired memory pages pending a GPU reset")
        rows = self._call(problems, "remapped rows", n.nvmlDeviceGetRemappedRows, h)
        if rows is not None:
            _corr, _unc, rows_pending, rows_failure = (int(x) for x in rows)
            if rows_failure:
                problems.append("row remapping failed")
            elif rows_pending:
                problems.append("row remapping pending a GPU reset")
        xids = self._xids.get(str(uuid) if uuid is not None else f"#{index}", [])
        if xids:
            problems.append("critical XID " + ", ".join(str(x) for x in sorted(set(xids))))
        return GPUInfo(
            index=index, uuid=None if uuid is None else str(uuid), name=None if name is None else str(name),
            memory_mib=memory_mib, mig_capable=mig is not None, mig_enabled=mig_enabled, mig_devices=mig_devices,
            ecc_uncorrected=None if ecc is None else int(ecc), problems=tuple(problems[:MAX_PROBLEMS]),
        )

    def read(self) -> list[GPUInfo]:
        """Every GPU, in index order. Raises NVMLError only when the device count itself cannot be read."""
        self._drain_events()
        count = int(self.nvml.nvmlDeviceGetCount())
        return [self.read_one(i) for i in range(count)]


def unhealthy_count(gpus: Iterable[GPUInfo]) -> int:
    return sum(1 for g in gpus if not g.healthy)
