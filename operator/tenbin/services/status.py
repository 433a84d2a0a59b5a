"""The one builder of the status patches the services write: fields by their Python names, as the
AIWorkloadStatus / GPUClusterStatus models define them, on the wire by the models' own aliases.

The apiserver silently prunes a status field its schema does not have, so a misspelt wire name would be
lost without a word; here it is a TypeError. Values go out as plain data: the status enums (StrEnums)
become their string values, `None` stays (in a JSON merge patch it deletes the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel

from tenbin.api import AIWorkloadStatus, GPUClusterStatus


def workload_status(**fields: Any) -> dict[str, Any]:
    """`{"status": {...}}`, the merge patch of an AIWorkload's status: `workload_status(phase=...,
    observed_generation=...)`."""
    return _patch(AIWorkloadStatus, fields)


def cluster_status(**fields: Any) -> dict[str, Any]:
    """`{"status": {...}}`, the merge patch of a GPUCluster's status: `cluster_status(free_gpus=...)`."""
    return _patch(GPUClusterStatus, fields)


def _patch(model: type[BaseModel], fields: Mapping[str, Any]) -> dict[str, Any]:
    known = model.model_fields
    out: dict[str, Any] = {}
    for name, value in fields.items():
        info = known.get(name)
        if info is None:
            raise TypeError(f"{model.__name__} has no field {name!r} (fields: {', '.join(known)})")
        out[info.alias or name] = plain(value)
    return {"status": out}


def plain(value: Any) -> Any:
    """`value` as plain data: enum members become their values, in dicts and lists at any depth."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value
