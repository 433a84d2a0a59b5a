"""The status-patch builder (`tenbin.services.status`) and the typed status vocabulary of the services."""

from __future__ import annotations

import ast
import json
import re
from enum import StrEnum
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from tenbin.api import (
    AIWorkloadStatus,
    ClusterCondition,
    ClusterPhase,
    ClusterReason,
    ConditionStatus,
    GPUClusterStatus,
    MigrationPhase,
    MigrationPolicy,
    Reason,
    WorkloadCondition,
    WorkloadPhase,
)
from tenbin.services.status import cluster_status, workload_status

SERVICES = Path(__file__).resolve().parents[2] / "operator" / "tenbin" / "services"

# --- the builder ---------------------------------------------------------------------------------------


def test_wire_names_are_the_models_aliases() -> None:
    assert workload_status(observed_generation=3, phase="Running") == \
        {"status": {"observedGeneration": 3, "phase": "Running"}}
    assert cluster_status(free_gpus=4, last_sync_time="2026-01-01T00:00:00Z", observed_generation=1) == \
        {"status": {"freeGPUs": 4, "lastSyncTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}}


@pytest.mark.parametrize(("build", "model"), [(workload_status, AIWorkloadStatus), (cluster_status, GPUClusterStatus)])
def test_every_field_of_the_model_is_accepted_under_its_alias(build, model) -> None:
    for name, info in model.model_fields.items():
        assert build(**{name: 1}) == {"status": {info.alias or name: 1}}


@pytest.mark.parametrize(("build", "name"), [
    (workload_status, "observedGeneration"),  # the wire name is not a field name
    (workload_status, "phse"),
    (workload_status, "free_gpus"),  # a GPUCluster field
    (cluster_status, "placement"),  # an AIWorkload field
    (cluster_status, "freeGPUs"),
])
def test_an_unknown_field_is_refused_by_name(build, name) -> None:
    with pytest.raises(TypeError, match=re.escape(repr(name))):
        build(**{name: 1})


def test_none_stays_so_the_merge_patch_deletes_the_field() -> None:
    assert workload_status(placement=None, migration=None) == {"status": {"placement": None, "migration": None}}


def test_enum_members_go_out_as_plain_strings() -> None:
    condition = {"type": WorkloadCondition.SCHEDULED, "status": ConditionStatus.FALSE, "reason": Reason.UNSCHEDULABLE}
    patch = workload_status(phase=WorkloadPhase.UNSCHEDULABLE, conditions=[condition],
                            migration={"phase": MigrationPhase.PENDING})
    status = patch["status"]
    values = [status["phase"], *status["conditions"][0].values(), status["migration"]["phase"]]
    assert values == ["Unschedulable", "Scheduled", "False", "Unschedulable", "Pending"]
    assert all(type(v) is str for v in values)
    assert condition["type"] is WorkloadCondition.SCHEDULED  # the caller's data is not changed
    assert json.loads(json.dumps(patch)) == patch
    assert ApiClient().sanitize_for_serialization(patch) == patch


def test_the_patch_validates_against_the_model() -> None:
    patch = cluster_status(phase=ClusterPhase.READY, free_gpus=2, conditions=[
        {"type": ClusterCondition.READY, "status": ConditionStatus.TRUE, "reason": ClusterReason.OBSERVED}])
    assert GPUClusterStatus.model_validate(patch["status"]).free_gpus == 2


# --- no literal status vocabulary in the services ---------------------------------------------------

TENBIN_ENUMS: tuple[type[StrEnum], ...] = (
    WorkloadPhase, MigrationPhase, MigrationPolicy, ClusterPhase, ConditionStatus, WorkloadCondition,
    ClusterCondition, Reason, ClusterReason)
VOCABULARY = frozenset(m.value for e in TENBIN_ENUMS for m in e)
KUBERNETES_NAMES = re.compile(r"^(POD_|JOB_|CONDITION_TRUE$)")  # member_objects' constants of Kubernetes' words


def _allowed(tree: ast.Module, module: str) -> set[int]:
    """ids of the constants member_objects may hold: the values of its module-level Kubernetes constants."""
    if module != "member_objects.py":
        return set()
    out: set[int] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            names = [n for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            if names and all(KUBERNETES_NAMES.match(n.id) for n in names):
                out |= {id(n) for n in ast.walk(stmt.value)}
    return out


def literal_vocabulary(source: str, module: str) -> list[str]:
    """`line: 'word'` for each string constant in `source` that is a value of Tenbin's status enums."""
    tree = ast.parse(source)
    allowed = _allowed(tree, module)
    return [f"{module}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in VOCABULARY
            and id(n) not in allowed]


def test_the_scan_sees_a_literal() -> None:
    src = 'def f(w):\n    w.post_event(b, "Warning", "Unschedulable", m)\n    return {"phase": "Pending"}\n'
    assert literal_vocabulary(src, "placement.py") == ["placement.py:2: 'Unschedulable'", "placement.py:3: 'Pending'"]
    assert literal_vocabulary('POD_FAILED = "Failed"\nX = "Failed"\n', "member_objects.py") == \
        ["member_objects.py:2: 'Failed'"]
    assert literal_vocabulary('POD_FAILED = "Failed"\n', "placement.py") == ["placement.py:1: 'Failed'"]


def test_no_service_writes_a_literal_phase_condition_or_reason() -> None:
    modules = sorted(SERVICES.glob("*.py"))
    assert {"placement.py", "member_sync.py", "migrator.py", "member_objects.py"} <= {p.name for p in modules}
    found = [hit for p in modules for hit in literal_vocabulary(p.read_text(), p.name)]
    assert not found, "use the enums of tenbin.api:\n" + "\n".join(found)


def test_every_phase_read_from_a_member_names_a_reason() -> None:
    """member_sync posts `Reason(phase)` for the phase `observed_phase` returns: each must be a Reason."""
    tree = ast.parse((SERVICES / "member_objects.py").read_text())
    readers = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "observed_phase"]
    kinds = ast.parse((SERVICES.parent / "kinds.py").read_text())  # the kinds' own status readers
    readers += [n for n in ast.walk(kinds) if isinstance(n, ast.FunctionDef) and n.name.endswith("_phase")]
    phases = {WorkloadPhase[n.attr] for fn in readers for n in ast.walk(fn)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "WorkloadPhase"}
    assert phases == {WorkloadPhase.SCHEDULED, WorkloadPhase.RUNNING, WorkloadPhase.SUCCEEDED, WorkloadPhase.FAILED}
    assert all(Reason(p) for p in phases)


# --- every status patch goes through the builder -----------------------------------------------------

BUILDERS = {"workload_status", "cluster_status"}


def _is_builder_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BUILDERS


def unbuilt_patches(source: str, module: str) -> list[str]:
    """`patch_status(...)` calls whose patch is not a builder's result (directly, or a name only ever
    assigned one in the same function)."""
    out = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        built: dict[str, bool] = {}
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        built[t.id] = built.get(t.id, True) and _is_builder_call(n.value)
        for n in ast.walk(fn):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "patch_status":
                patch = n.args[-1] if n.args else None
                ok = patch is not None and (_is_builder_call(patch) or (
                    isinstance(patch, ast.Name) and built.get(patch.id, False)))
                if not ok:
                    out.append(f"{module}:{n.lineno}")
    return out


def test_the_routing_scan_sees_a_hand_built_patch() -> None:
    src = ('async def f(hub):\n    await hub.patch_status("AIWorkload", ns, n, {"status": {"phase": p}})\n'
           '    patch = workload_status(phase=p)\n    await hub.patch_status("AIWorkload", ns, n, patch)\n'
           '    other = {"status": {}}\n    await hub.patch_status("AIWorkload", ns, n, other)\n')
    assert unbuilt_patches(src, "m.py") == ["m.py:2", "m.py:6"]


def test_every_status_patch_is_built_by_the_builder() -> None:
    modules = [p for p in sorted(SERVICES.glob("*.py")) if p.name != "status.py"]
    calls = sum(p.read_text().count(".patch_status(") for p in modules)
    assert calls >= 10  # the scan below looks at something
    found = [hit for p in modules for hit in unbuilt_patches(p.read_text(), p.name)]
    assert not found, "build status patches with tenbin.services.status:\n" + "\n".join(found)
