"""Argo CD resource actions for AIWorkload and GPUCluster, executed by a real Lua runtime: each button is offered
only when it makes sense, and what it writes is what Tenbin's own predicates read as the request."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_harness import ROOT

from health_lua import ACTION_DIRS, act, discover
from tenbin.api.gpucluster import GPUCluster
from tenbin.kinds import BUILT_IN
from tenbin.services.migration_state import evacuation_requested, replace_requested
from tenbin.services.migration_steps import fenced
from tenbin.services.state import ClusterState

SNIPPET = ROOT / "examples" / "argocd" / "argocd-cm-actions.yaml"
DEFINED = {"AIWorkload": ["re-place"], "GPUCluster": ["cordon", "uncordon", "evacuate", "fence"]}


def aiw(phase: str | None = "Running", placed: bool = True, migration: str | None = None,
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "llm-finetune", "namespace": "research", "generation": 1,
                            "annotations": {"team": "nlp"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj: dict[str, Any] = {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": meta,
                           "spec": {"gpu": {"count": 8}, "template": {"kind": "Job"}}}
    if phase is not None:
        obj["status"] = {"phase": phase}
        if placed:
            obj["status"]["placement"] = {"cluster": "onprem-tokyo"}
        if migration is not None:
            obj["status"]["migration"] = {"phase": migration}
    return obj


def gpuc(cordoned: bool = False, ready: tuple[str, str] | None = ("True", "Observed"),
         annotations: dict[str, str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "fleet" / "onprem-tokyo.yaml").read_text())
    obj["spec"]["cordoned"] = cordoned
    if annotations:
        obj["metadata"]["annotations"] = dict(annotations)
    if ready is not None:
        obj["status"] = {"conditions": [{"type": "Ready", "status": ready[0], "reason": ready[1], "message": "",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    return obj


def test_argocd_cm_snippet_installs_exactly_these_scripts() -> None:
    cm = yaml.safe_load(SNIPPET.read_text())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    assert set(cm["data"]) == {f"resource.customizations.actions.tenbin.io_{k}" for k in DEFINED}
    for kind, names in DEFINED.items():
        entry = yaml.safe_load(cm["data"][f"resource.customizations.actions.tenbin.io_{kind}"])
        assert entry["discovery.lua"] == (ACTION_DIRS[kind] / "discovery.lua").read_text()
        assert [d["name"] for d in entry["definitions"]] == names
        for d in entry["definitions"]:
            assert d["action.lua"] == (ACTION_DIRS[kind] / f"{d['name']}.lua").read_text(), d["name"]
        # every action discovery offers has a definition, and every definition is offered
        assert set(discover(kind, aiw() if kind == "AIWorkload" else gpuc())) == set(names)
    assert {p.stem for d in ACTION_DIRS.values() for p in d.glob("*.lua")} == \
        {"discovery"} | {n for names in DEFINED.values() for n in names}


@pytest.mark.parametrize(("case", "obj", "enabled"), [
    ("not placed yet", aiw(None), False),
    ("Unschedulable, never placed", aiw("Unschedulable", placed=False), False),
    ("Running", aiw("Running"), True),
    ("Scheduled, pods starting", aiw("Scheduled"), True),
    ("after a completed move", aiw("Running", migration="Completed"), True),
    ("after a failed move", aiw("Running", migration="Failed"), True),
    ("a move under way", aiw("Migrating", migration="StartingTarget"), False),
    ("checkpointing", aiw("Migrating", migration="Checkpointing"), False),
    ("Succeeded", aiw("Succeeded"), False),
    ("Failed", aiw("Failed"), False),
    ("being deleted", aiw("Running", deleting=True), False),
], ids=lambda v: v if isinstance(v, str) else "")
def test_re_place_is_offered_only_for_placed_unfinished_work_not_moving(case: str, obj: dict[str, Any],
                                                                       enabled: bool) -> None:
    assert discover("AIWorkload", obj) == {"re-place": enabled}, case


def test_re_place_writes_a_request_tenbin_acts_on_once() -> None:
    before = aiw()
    after = act("AIWorkload", "re-place", before)
    value = after["metadata"]["annotations"]["tenbin.io/replace"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
    written = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - written).total_seconds()) < 120  # UTC ("!"), not the host's zone
    assert replace_requested(after) == value
    assert after["metadata"]["annotations"]["team"] == "nlp" and after["spec"] == before["spec"]
    acted = copy.deepcopy(after)
    acted["status"]["replaceRequest"] = value
    assert replace_requested(acted) is None  # recorded as acted on: the same value asks nothing more
    # a workload with no annotations at all
    bare = aiw()
    del bare["metadata"]["annotations"]
    assert replace_requested(act("AIWorkload", "re-place", bare)) is not None


@pytest.mark.parametrize(("case", "obj", "want"), [
    ("ready", gpuc(), {"cordon": True, "uncordon": False, "evacuate": True, "fence": False}),
    ("cordoned", gpuc(cordoned=True), {"cordon": False, "uncordon": True, "evacuate": True, "fence": False}),
    ("evacuating", gpuc(cordoned=True, annotations={"tenbin.io/evacuate": "true"}),
     {"cordon": False, "uncordon": True, "evacuate": False, "fence": False}),
    ("unreachable", gpuc(ready=("False", "Unreachable")),
     {"cordon": True, "uncordon": False, "evacuate": True, "fence": True}),
    ("unreachable, fenced", gpuc(ready=("False", "Unreachable"), annotations={"tenbin.io/fenced": "true"}),
     {"cordon": True, "uncordon": False, "evacuate": True, "fence": False}),
    ("invalid spec: reachable, nothing to fence", gpuc(ready=("False", "InvalidSpec")),
     {"cordon": True, "uncordon": False, "evacuate": True, "fence": False}),
    ("not observed yet", gpuc(ready=None), {"cordon": True, "uncordon": False, "evacuate": True, "fence": False}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_gpucluster_actions_are_offered_by_state(case: str, obj: dict[str, Any], want: dict[str, bool]) -> None:
    assert discover("GPUCluster", obj) == want, case


def test_gpucluster_actions_write_what_tenbin_reads() -> None:
    ready = gpuc()
    cordoned = act("GPUCluster", "cordon", ready)
    assert GPUCluster.model_validate(cordoned).spec.cordoned is True and not evacuation_requested(cordoned)

    evacuating = act("GPUCluster", "evacuate", ready)  # cordons too: Evacuation needs both
    assert GPUCluster.model_validate(evacuating).spec.cordoned is True and evacuation_requested(evacuating)

    released = act("GPUCluster", "uncordon", evacuating)
    assert GPUCluster.model_validate(released).spec.cordoned is False and not evacuation_requested(released)
    assert "tenbin.io/evacuate" not in (released["metadata"].get("annotations") or {})
    # the request went with the uncordon: cordoning again does not evacuate at once
    assert not evacuation_requested(act("GPUCluster", "cordon", released))

    lost = gpuc(ready=("False", "Unreachable"))
    job = aiw()
    assert not fenced(ClusterState(name="onprem-tokyo", body=lost), job, BUILT_IN)
    assert fenced(ClusterState(name="onprem-tokyo", body=act("GPUCluster", "fence", lost)), job, BUILT_IN)
    for name in ("cordon", "uncordon", "evacuate", "fence"):  # the rest of the object is left as it was
        out = act("GPUCluster", name, lost)
        assert out["spec"]["gpus"] == lost["spec"]["gpus"] and out["metadata"]["name"] == "onprem-tokyo", name


@pytest.mark.parametrize("body", [
    'obj.metadata.name = string.upper(obj.metadata.name)\nreturn obj\n',
    'obj.metadata.name = obj.metadata.name:upper()\nreturn obj\n',
    'obj.spec.cordoned = math.floor(1) == 1\nreturn obj\n',
    'io.write("x")\nreturn obj\n',
    'os.execute("true")\nreturn obj\n',
])
def test_the_runner_refuses_what_argo_cds_sandbox_refuses(tmp_path: Path, body: str) -> None:
    """Argo CD gives the scripts no string, math or io library and an os with only time and date: a script
    that leans on them would fail in Argo CD, so it fails here too, instead of passing."""
    import lupa.lua51

    script = tmp_path / "action.lua"
    script.write_text(body)
    with pytest.raises(lupa.lua51.LuaError):
        act("GPUCluster", "custom", gpuc(), script=script)
    script.write_text('local os = require("os")\nobj.metadata.name = os.date("!%Y")\nreturn obj\n')
    assert act("GPUCluster", "custom", gpuc(), script=script)["metadata"]["name"].isdigit()  # what it does give
