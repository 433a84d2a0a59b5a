"""The three kinds, their CRD metadata, and one parser that turns a plain dict into a validated object.

`parse_object` is what `tenbin simulate` and the operator's handlers use: it reports the first problem
as an `ObjectError` naming the object (kind and name) and the field path (`spec.gpus[0].count`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tenbin.api.aiworkload import AIWorkload
from tenbin.api.common import API_VERSION
from tenbin.api.gpucluster import GPUCluster
from tenbin.api.policy import PlacementPolicy

TenbinObject = GPUCluster | AIWorkload | PlacementPolicy


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str | None = None


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    model: type[GPUCluster] | type[AIWorkload] | type[PlacementPolicy]
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("tenbin",)
    columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)

    def display_name(self, metadata: Mapping[str, Any] | None) -> str:
        """`research/llm` for namespaced objects (namespace `default` when unset), `name` otherwise."""
        meta = metadata if isinstance(metadata, Mapping) else {}
        name = meta.get("name")
        name = name if isinstance(name, str) and name else "<unnamed>"
        if not self.namespaced:
            return name
        ns = meta.get("namespace")
        return f"{ns if isinstance(ns, str) and ns else 'default'}/{name}"


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")

KINDS: dict[str, KindInfo] = {
    "GPUCluster": KindInfo(
        kind="GPUCluster",
        plural="gpuclusters",
        singular="gpucluster",
        model=GPUCluster,
        namespaced=False,
        short_names=("gpuc",),
        columns=(
            PrinterColumn("Tier", "string", ".spec.tier"),
            PrinterColumn("Jurisdiction", "string", ".spec.jurisdiction"),
            PrinterColumn("Free GPUs", "integer", ".status.freeGPUs", "free GPUs of all models"),
            PrinterColumn("Phase", "string", ".status.phase"),
            PrinterColumn("Provider", "string", ".spec.provider", priority=1),
            PrinterColumn("Region", "string", ".spec.region", priority=1),
            PrinterColumn("Cordoned", "boolean", ".spec.cordoned", priority=1),
            _AGE,
        ),
    ),
    "AIWorkload": KindInfo(
        kind="AIWorkload",
        plural="aiworkloads",
        singular="aiworkload",
        model=AIWorkload,
        namespaced=True,
        short_names=("aiw",),
        columns=(
            PrinterColumn("Phase", "string", ".status.phase"),
            PrinterColumn("Cluster", "string", ".status.placement.cluster"),
            PrinterColumn("GPUs", "integer", ".spec.gpu.count", "GPUs per replica"),
            PrinterColumn("Replicas", "integer", ".spec.replicas", priority=1),
            PrinterColumn("Model", "string", ".status.placement.gpuModel"),
            PrinterColumn("Price/GPU-h", "number", ".status.placement.pricePerGPUHour",
                          "price of one GPU-hour in the policy's base currency"),
            PrinterColumn("Currency", "string", ".status.placement.currency", priority=1),
            PrinterColumn("Classification", "string", ".spec.residency.dataClassification", priority=1),
            PrinterColumn("Message", "string", ".status.message", priority=1),
            _AGE,
        ),
    ),
    "PlacementPolicy": KindInfo(
        kind="PlacementPolicy",
        plural="placementpolicies",
        singular="placementpolicy",
        model=PlacementPolicy,
        namespaced=False,
        short_names=("tpol",),  # not "pp": Karmada's PropagationPolicy has it
        columns=(
            PrinterColumn("Base", "string", ".spec.baseCurrency"),
            PrinterColumn("Price Weight", "number", ".spec.weights.price"),
            PrinterColumn("Availability Weight", "number", ".spec.weights.availability"),
            _AGE,
        ),
    ),
}


class ObjectError(ValueError):
    """A document that is not a valid Tenbin object; names the object and the field."""

    def __init__(self, obj: str, field_path: str, message: str) -> None:
        self.obj = obj
        self.field_path = field_path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.obj}: " if self.obj else ""
        return f"{where}{self.field_path}: {self.message}" if self.field_path else f"{where}{self.message}"


def field_path(loc: tuple[int | str, ...]) -> str:
    """('spec', 'gpus', 0, 'count') -> 'spec.gpus[0].count'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif "[" in part and part.endswith("]") and not out:
            continue  # pydantic union/validator tags at the root carry no path
        else:
            out += f".{part}" if out else part
    return out


def first_error(err: ValidationError) -> tuple[str, str, int]:
    """(field path, message, number of errors) for the first error pydantic reports."""
    errors = err.errors(include_url=False)
    e = errors[0]
    msg = str(e["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if e["type"] == "extra_forbidden":
        msg = "unknown field"
    elif e["type"] == "string_type" and isinstance(e.get("input"), bool):
        msg += f" (got the boolean {str(e['input']).lower()}: YAML reads an unquoted NO, no, yes, on or off as a " \
            "boolean, so quote it: \"NO\")"
    return field_path(tuple(e["loc"])), msg, len(errors)


def object_name(doc: Mapping[str, Any]) -> str:
    """`Kind name` (or `Kind ns/name`) of a raw document, for error messages."""
    kind = doc.get("kind")
    info = KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        return f"{kind if isinstance(kind, str) else 'object'} {name if isinstance(name, str) else '<unnamed>'}"
    return f"{info.kind} {info.display_name(doc.get('metadata'))}"


def parse_object(doc: Any) -> TenbinObject:
    """Validate one Kubernetes-style document (a plain dict) as a Tenbin object, or raise ObjectError."""
    if not isinstance(doc, Mapping):
        raise ObjectError("", "", f"expected a mapping (a Kubernetes object), got {type(doc).__name__}")
    who = object_name(doc)
    if doc.get("apiVersion") != API_VERSION:
        got = doc.get("apiVersion")
        raise ObjectError(who, "apiVersion", f"expected {API_VERSION!r}, got {got!r}")
    kind = doc.get("kind")
    info = KINDS.get(kind) if isinstance(kind, str) else None
    if info is None:
        raise ObjectError(who, "kind", f"unknown kind {kind!r} (expected one of {', '.join(sorted(KINDS))})")
    try:
        return info.model.model_validate(dict(doc))
    except ValidationError as err:
        path, msg, n = first_error(err)
        more = f" (and {n - 1} more error{'s' if n > 2 else ''})" if n > 1 else ""
        raise ObjectError(who, path, msg + more) from None
