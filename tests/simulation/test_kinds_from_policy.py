"""A kind the PlacementPolicy declares, driven through the real `Controller` against the in-memory hub and
member: refused while nobody declared it, placed as soon as the policy does (no edit of the AIWorkload), its
pods labelled, its phase read from the field the policy names, and a policy that stops declaring it leaves the
running work alone."""

from __future__ import annotations

import asyncio
from typing import Any

from test_races import MEMBER, deliver, fleet, round_
from world import NS

from tenbin.api import Reason
from tenbin.clusters.gateway import UID_LABEL, ObjectRef

VOLCANO = ("batch.volcano.sh/v1alpha1", "Job")
RULE = {"apiVersion": VOLCANO[0], "kind": VOLCANO[1],
        "podTemplates": [{"path": "spec.tasks[0].template", "replicasPath": "spec.tasks[0].replicas"}],
        "phase": {"path": "status.state.phase", "running": ["Running"], "succeeded": ["Completed"],
                  "failed": ["Failed", "Aborted"]}}


def volcano_job(name: str, workers: int, gpus: int) -> dict[str, Any]:
    pod = {"spec": {"containers": [{"name": "m", "image": "registry.example.com/x:1",
                                    "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name, "namespace": NS},
            "spec": {"gpu": {"count": gpus}, "replicas": workers,
                     "template": {"apiVersion": VOLCANO[0], "kind": VOLCANO[1], "metadata": {"name": name},
                                  "spec": {"tasks": [{"name": "worker", "replicas": workers, "template": pod}]}}}}


def test_declaring_a_kind_places_the_work_that_waited_for_it_and_its_status_reads_as_declared() -> None:
    async def run() -> None:
        hub, member, ctl, clock = fleet()
        member.served = member.served | {VOLCANO}  # the member serves the CRD; no controller writes its status
        await ctl.seed()
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)
        hub.create(volcano_job("vj", workers=2, gpus=2))
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)

        def state() -> dict[str, Any]:
            found = hub.get("AIWorkload", NS, "vj")
            assert found is not None
            return found["status"]

        valid = next(c for c in state()["conditions"] if c["type"] == "Valid")
        assert (valid["status"], valid["reason"]) == ("False", Reason.INVALID_SPEC)
        assert "spec.template.apiVersion" in valid["message"] and "spec.workloadKinds" in valid["message"]
        assert not member.objects
        await round_(hub, member, ctl, clock)
        assert [e[2] for e in hub.events if e[0] == f"{NS}/vj"] == [Reason.INVALID_SPEC]  # said once

        hub.merge("PlacementPolicy", None, "default", {"spec": {"workloadKinds": [RULE]}})
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)
        assert state()["placement"]["cluster"] == MEMBER and state()["phase"] == "Scheduled"
        assert not any(c["type"] == "Valid" and c["status"] == "False" for c in state()["conditions"])
        ref = ObjectRef(*VOLCANO, NS, "vj")
        copy = member.objects[ref]
        uid = hub.get("AIWorkload", NS, "vj")["metadata"]["uid"]  # type: ignore[index]
        assert copy["spec"]["tasks"][0]["template"]["metadata"]["labels"][UID_LABEL] == uid
        assert state()["placement"]["gpus"] == 4

        copy["status"] = {"state": {"phase": "Running"}}  # as Volcano's controller would write it
        await round_(hub, member, ctl, clock)
        assert state()["phase"] == "Running" and "status.state.phase Running" in state()["message"]

        hub.merge("PlacementPolicy", None, "default", {"spec": {"workloadKinds": None}})
        await deliver(hub, ctl)
        await round_(hub, member, ctl, clock)
        assert ref in member.objects  # running work is never removed because the policy forgot its kind
        assert state()["placement"]["cluster"] == MEMBER

        hub.merge("PlacementPolicy", None, "default", {"spec": {"workloadKinds": [RULE]}})
        await deliver(hub, ctl)
        member.objects[ref]["status"] = {"state": {"phase": "Completed"}}
        await round_(hub, member, ctl, clock)
        assert state()["phase"] == "Succeeded"

    asyncio.run(run())
