"""The AI workload kinds end to end, on their real controllers built from Go modules (tenbin.testbed.addons):
JobSet, LeaderWorkerSet, KubeRay's RayJob and Kubeflow's PyTorchJob, on KWOK pods; and Volcano's Job, a kind
only the PlacementPolicy declares (examples/policy/default.yaml), from its real CRD with no controller.

The on-prem member serves all five, the sovereign one all but Volcano's Job, the US one none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from operator_harness import OperatorProcess, aiw, apply, bring_member_back, member_pods
from tenbin.testbed import addons
from tenbin.testbed.binaries import TestbedError
from tenbin.testbed.fleet import Fleet
from tenbin.testbed.fleet import wait_until as _wait_until

ONPREM, SOVEREIGN, US = "t-onprem-jp", "t-sovereign-jp", "t-hyperscaler-us"
SERVES = {ONPREM: ["jobset", "lws", "kuberay", "training-operator", "volcano"],
          SOVEREIGN: ["jobset", "lws", "training-operator", "kuberay"]}
CHEAPEST = {"weights": {"price": 1}}


_HUB: list[Fleet] = []  # for wait_until's report


def wait_until(what: str, check: Any, timeout: float, abort: Any = None) -> None:
    """The testbed's wait_until; a timeout also says where every AIWorkload is and why (what the user sees)."""
    try:
        _wait_until(what, check, timeout, abort)
    except TestbedError as exc:
        seen = ""
        if _HUB:
            res = _HUB[0].kubectl("get", "aiworkloads", "-A", "-o", "json", check=False)
            items = json.loads(res.stdout)["items"] if res.returncode == 0 else []
            seen = "; ".join(f"{o['metadata']['name']}: {(o.get('status') or {}).get('phase')} on "
                             f"{((o.get('status') or {}).get('placement') or {}).get('cluster')}: "
                             f"{(o.get('status') or {}).get('message')}" for o in items)
        raise AssertionError(f"{exc}; AIWorkloads now: {seen}") from exc


@pytest.fixture(scope="module")
def addon_controllers(hub: Fleet) -> Iterator[Fleet]:
    _HUB[:] = [hub]
    try:
        for member, names in SERVES.items():
            addons.install(hub, member, names, log=lambda _m: None)
        yield hub
    finally:
        for member, names in SERVES.items():
            addons.uninstall(hub, member, names)


@pytest.fixture(scope="module")
def controllers(addon_controllers: Fleet, operator: OperatorProcess) -> Fleet:
    """The add-ons first, then the operator: its first API discovery of each member sees their kinds (a kind
    installed later is seen within the discovery cache's 60 s, which a test's first wait need not absorb)."""
    return addon_controllers


def pod(gpus: int, run_seconds: int | None = None) -> dict[str, Any]:
    # KWOK completes a Job's pod after a delay drawn between delay and jitter-delay: pin both
    annotations = {"pod-complete.stage.kwok.x-k8s.io/delay": f"{run_seconds}s",
                   "pod-complete.stage.kwok.x-k8s.io/jitter-delay": f"{run_seconds}s"} if run_seconds else {}
    container: dict[str, Any] = {"name": "main", "image": "registry.example.com/train:1"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {"metadata": {"annotations": annotations}, "spec": {"restartPolicy": "Never", "containers": [container]}}


def jobset(name: str, workers: int, run_seconds: int | None = None) -> dict[str, Any]:
    """A CPU-only coordinator and `workers` one-GPU workers."""
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": name},
            "spec": {"replicatedJobs": [
                {"name": "coordinator", "replicas": 1, "template": {"spec": {"template": pod(0, run_seconds)}}},
                {"name": "workers", "replicas": workers,
                 "template": {"spec": {"backoffLimit": 0, "template": pod(1, run_seconds)}}}]}}


def lws(name: str, size: int, gpus: int) -> dict[str, Any]:
    worker = pod(gpus)
    del worker["spec"]["restartPolicy"]
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": name},
            "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": size, "workerTemplate": worker}}}


def pytorchjob(name: str) -> dict[str, Any]:
    role = {"replicas": 1, "restartPolicy": "OnFailure", "template": pod(1)}
    role["template"]["spec"]["containers"][0]["name"] = "pytorch"  # the operator looks for this container
    del role["template"]["spec"]["restartPolicy"]
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": role, "Worker": json.loads(json.dumps(role))}}}


def rayjob(name: str, submitter_seconds: int | None = None) -> dict[str, Any]:
    """A CPU-only head and one one-GPU worker. KubeRay fails a RayJob whose submitter finished without the Ray
    job reaching an end (there is no Ray behind KWOK pods); a submitter that runs `submitter_seconds` keeps the
    RayJob Running that long, as a real job that takes time does."""
    head, worker = pod(0), pod(1)
    for p, c in ((head, "ray-head"), (worker, "ray-worker")):
        del p["spec"]["restartPolicy"]
        p["spec"]["containers"][0]["name"] = c
    submitter = {}
    if submitter_seconds:
        job_pod = pod(0, submitter_seconds)
        job_pod["spec"]["containers"][0]["name"] = "ray-job-submitter"
        submitter = {"submitterPodTemplate": job_pod}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name},
            "spec": {"entrypoint": "python /home/ray/job.py", **submitter, "rayClusterSpec": {
                "headGroupSpec": {"rayStartParams": {}, "template": head},
                "workerGroupSpecs": [{"groupName": "gpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                                      "rayStartParams": {}, "template": worker}]}}}


def vcjob(name: str, workers: int) -> dict[str, Any]:
    """Volcano's Job: a master and `workers` workers of one GPU each, two task templates."""
    def task(role: str, replicas: int) -> dict[str, Any]:
        return {"name": role, "replicas": replicas, "template": pod(1)}
    return {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": name},
            "spec": {"minAvailable": 1 + workers, "tasks": [task("master", 1), task("worker", workers)]}}


VCJOBS = "jobs.batch.volcano.sh"


def run_like_volcano(fleet: Fleet, member: str, ns: str, name: str) -> dict[str, Any]:
    """What Volcano's controller does with a Job (it is not built here: volcano.sh/volcano is refused by the Go
    module proxy): a pod per task replica from the task's template as Tenbin wrote it, owned by the Job."""
    [vj] = [o for o in member_objects(fleet, member, ns, VCJOBS) if o["metadata"]["name"] == name]
    owner = {"apiVersion": vj["apiVersion"], "kind": "Job", "name": name, "uid": vj["metadata"]["uid"],
             "controller": True}
    pods = [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {**task["template"].get("metadata", {}), "name": f"{name}-{task['name']}-{i}",
                          "namespace": ns, "ownerReferences": [owner]},
             "spec": task["template"]["spec"]}
            for task in vj["spec"]["tasks"] for i in range(task["replicas"])]
    fleet.kubectl("apply", "-f", "-", cluster=member, input=yaml.safe_dump_all(pods))
    return dict(vj)


def volcano_phase(fleet: Fleet, member: str, ns: str, name: str, phase: str) -> None:
    """The status Volcano's controller writes (status.state.phase, its JobPhase values)."""
    fleet.kubectl("patch", VCJOBS, name, "-n", ns, "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": {"state": {"phase": phase}}}), cluster=member)


def workload(name: str, template: dict[str, Any], gpus: int, replicas: int, tiers: list[str],
             migration: str = "OnFailure") -> dict[str, Any]:
    return {"apiVersion": "tenbin.io/v1alpha1", "kind": "AIWorkload", "metadata": {"name": name},
            "spec": {"gpu": {"count": gpus}, "replicas": replicas,
                     "residency": {"dataClassification": "Internal", "tiers": tiers},
                     "placement": CHEAPEST, "migration": {"policy": migration}, "template": template}}


def status(fleet: Fleet, ns: str, name: str) -> dict[str, Any]:
    return dict(aiw(fleet, ns, name).get("status") or {})


def phase_on(fleet: Fleet, ns: str, name: str, phase: str, cluster: str) -> bool:
    st = status(fleet, ns, name)
    return st.get("phase") == phase and (st.get("placement") or {}).get("cluster") == cluster


def member_objects(fleet: Fleet, member: str, ns: str, resource: str) -> list[dict[str, Any]]:
    res = fleet.kubectl("get", resource, "-n", ns, "-o", "json", cluster=member, check=False, timeout=10)
    if res.returncode != 0:
        raise ConnectionError(f"kubectl get {resource} in {member}: {res.stderr.strip()[:300]}")
    return list(json.loads(res.stdout)["items"])


def uid_of(fleet: Fleet, ns: str, name: str) -> str:
    return str(aiw(fleet, ns, name)["metadata"]["uid"])


# ----------------------------------------------------------------------------------------------------


def test_a_jobset_runs_to_succeeded_with_every_pod_attributed(controllers: Fleet, ns: str) -> None:
    fleet = controllers
    apply(fleet, ns, workload("pretrain", jobset("pretrain", workers=2, run_seconds=3), gpus=1, replicas=2,
                              tiers=["OnPrem"]))
    wait_until("pretrain Succeeded on-prem", lambda: phase_on(fleet, ns, "pretrain", "Succeeded", ONPREM),
               timeout=120)
    [js] = member_objects(fleet, ONPREM, ns, "jobsets")
    assert js["status"].get("terminalState") == "Completed"  # the JobSet controller's own verdict
    pods = member_pods(fleet, ONPREM, ns)
    assert len(pods) == 3  # the coordinator and two workers, from two replicated jobs
    assert {p["metadata"]["labels"].get("tenbin.io/workload-uid") for p in pods} == {uid_of(fleet, ns, "pretrain")}
    assert "JobSet completed" in status(fleet, ns, "pretrain")["message"]


def test_gpus_of_every_pod_template_count_once(controllers: Fleet, ns: str) -> None:
    """A LeaderWorkerSet of 2 pods x 2 GPUs Running on-prem (8 H100s) leaves exactly 4: a 4-GPU Job fits
    there (counted twice, it would not), and then a 1-GPU Job does not (not counted, it would)."""
    fleet = controllers
    apply(fleet, ns, workload("serve", lws("serve", size=2, gpus=2), gpus=2, replicas=2, tiers=["OnPrem"]))
    wait_until("serve Running on-prem", lambda: phase_on(fleet, ns, "serve", "Running", ONPREM), timeout=120)
    lw = member_objects(fleet, ONPREM, ns, "leaderworkersets")[0]
    assert lw["status"].get("readyReplicas") == 1
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fill"},
           "spec": {"parallelism": 1, "completions": 1, "template": pod(4, run_seconds=600)}}
    apply(fleet, ns, workload("fill", job, gpus=4, replicas=1, tiers=["OnPrem"]))
    wait_until("fill Running on-prem", lambda: phase_on(fleet, ns, "fill", "Running", ONPREM), timeout=120)
    one = json.loads(json.dumps(job))
    one["metadata"]["name"] = "one-more"
    one["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1
    apply(fleet, ns, workload("one-more", one, gpus=1, replicas=1, tiers=["OnPrem"]))
    wait_until("one-more Unschedulable", lambda: status(fleet, ns, "one-more").get("phase") == "Unschedulable",
               timeout=120)
    assert "insufficient H100-80GB" in status(fleet, ns, "one-more")["message"]


def test_a_pytorchjob_runs_and_a_rayjob_reports_its_controllers_verdict(controllers: Fleet, ns: str) -> None:
    fleet = controllers
    apply(fleet, ns, workload("finetune", pytorchjob("finetune"), gpus=1, replicas=2, tiers=["OnPrem"]),
          workload("infer", rayjob("infer"), gpus=1, replicas=1, tiers=["OnPrem"]))
    wait_until("finetune Running on-prem", lambda: phase_on(fleet, ns, "finetune", "Running", ONPREM), timeout=120)
    assert "PyTorchJob running" in status(fleet, ns, "finetune")["message"]
    # KubeRay marks the RayJob Running once its RayCluster is up; with no Ray head behind the KWOK pods the
    # job never reports an end, and KubeRay fails it after its grace period: Tenbin reports that verdict
    wait_until("infer Running on-prem", lambda: phase_on(fleet, ns, "infer", "Running", ONPREM)
               or status(fleet, ns, "infer").get("phase") == "Failed", timeout=120)
    wait_until("infer Failed, as KubeRay says", lambda: status(fleet, ns, "infer").get("phase") == "Failed",
               timeout=180)
    assert "RayJob Failed" in status(fleet, ns, "infer")["message"]
    uid = uid_of(fleet, ns, "infer")
    [rc] = member_objects(fleet, ONPREM, ns, "rayclusters")
    assert rc["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]["tenbin.io/workload-uid"] == uid
    fleet.kubectl("delete", "aiworkload", "-n", ns, "finetune", "infer")
    wait_until("the PyTorchJob, the RayJob and their pods gone from the member", lambda: not (
        member_objects(fleet, ONPREM, ns, "pytorchjobs") or member_objects(fleet, ONPREM, ns, "rayjobs")
        or [p for p in member_pods(fleet, ONPREM, ns) if p["metadata"]["labels"].get("tenbin.io/workload-uid")]),
        timeout=120)


def finish_pods(fleet: Fleet, member: str, ns: str, uid: str) -> None:
    """What the kubelet reports when the pods' containers exit 0 (KWOK completes only pods a batch Job owns)."""
    for p in member_pods(fleet, member, ns):
        if p["metadata"]["labels"].get("tenbin.io/workload-uid") != uid or p["status"].get("phase") != "Running":
            continue
        done = {"terminated": {"exitCode": 0, "reason": "Completed",
                               "startedAt": p["status"].get("startTime"), "finishedAt": p["status"].get("startTime")}}
        statuses = [{**c, "ready": False, "started": False, "state": done}
                    for c in p["status"].get("containerStatuses") or []]
        fleet.kubectl("patch", "pod", p["metadata"]["name"], "-n", ns, "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": {"phase": "Succeeded", "containerStatuses": statuses}}),
                      cluster=member)


def test_a_pytorchjob_follows_the_training_operator_to_succeeded(controllers: Fleet, ns: str) -> None:
    fleet = controllers
    apply(fleet, ns, workload("short-tune", pytorchjob("short-tune"), gpus=1, replicas=2, tiers=["OnPrem"]))
    wait_until("short-tune Running on-prem", lambda: phase_on(fleet, ns, "short-tune", "Running", ONPREM),
               timeout=120)
    finish_pods(fleet, ONPREM, ns, uid_of(fleet, ns, "short-tune"))
    wait_until("short-tune Succeeded on-prem", lambda: phase_on(fleet, ns, "short-tune", "Succeeded", ONPREM),
               timeout=150)
    [job] = member_objects(fleet, ONPREM, ns, "pytorchjobs")
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in job["status"]["conditions"])  # its word
    assert "PyTorchJob succeeded" in status(fleet, ns, "short-tune")["message"]


def test_a_jobset_moves_with_the_checkpoint_handshake_and_an_lws_make_before_break(
        controllers: Fleet, ns: str) -> None:
    fleet = controllers
    apply(fleet, ns,
          workload("train", jobset("train", workers=1, run_seconds=600), gpus=1, replicas=1,
                   tiers=["OnPrem", "SovereignCloud"]),
          workload("chat", lws("chat", size=2, gpus=1), gpus=1, replicas=2, tiers=["OnPrem", "SovereignCloud"]))
    for name in ("train", "chat"):
        wait_until(f"{name} Running on-prem", lambda n=name: phase_on(fleet, ns, n, "Running", ONPREM), timeout=120)
    fleet.kubectl("annotate", "aiworkload", "-n", ns, "train", "chat", "tenbin.io/replace=now")

    def source_annotations() -> dict[str, str]:
        objs = member_objects(fleet, ONPREM, ns, "jobsets")
        return dict(objs[0]["metadata"].get("annotations") or {}) if objs else {}

    wait_until("checkpoint requested on the JobSet", lambda: "tenbin.io/checkpoint-requested" in source_annotations(),
               timeout=60)
    assert member_objects(fleet, SOVEREIGN, ns, "jobsets") == [], "the target started before the checkpoint"
    fleet.kubectl("annotate", "jobset", "-n", ns, "train", "tenbin.io/checkpoint-done=step-7", cluster=ONPREM)
    wait_until("train Running on the sovereign member",
               lambda: phase_on(fleet, ns, "train", "Running", SOVEREIGN), timeout=120)
    [target] = member_objects(fleet, SOVEREIGN, ns, "jobsets")
    assert target["metadata"]["annotations"]["tenbin.io/resume-from"] == ONPREM
    for rj in target["spec"]["replicatedJobs"]:  # every pod template carries the hints (downward API)
        assert rj["template"]["spec"]["template"]["metadata"]["annotations"]["tenbin.io/checkpoint"] == "step-7"
    wait_until("the source JobSet gone", lambda: member_objects(fleet, ONPREM, ns, "jobsets") == [], timeout=60)

    wait_until("chat Running on the sovereign member",
               lambda: phase_on(fleet, ns, "chat", "Running", SOVEREIGN), timeout=120)
    history = [(h["event"], h.get("from"), h.get("cluster")) for h in status(fleet, ns, "chat").get("history", [])]
    assert ("Migrated", ONPREM, SOVEREIGN) in history
    wait_until("the source LeaderWorkerSet gone",
               lambda: member_objects(fleet, ONPREM, ns, "leaderworkersets") == [], timeout=60)


def test_a_pytorchjob_and_a_rayjob_move_with_the_checkpoint_handshake(controllers: Fleet, ns: str) -> None:
    """Re-placed (the Argo CD action's annotation), each is asked for a checkpoint on its own object, stopped,
    then started on the sovereign member with the checkpoint named on every pod template: never two copies."""
    fleet = controllers
    apply(fleet, ns,
          workload("tune", pytorchjob("tune"), gpus=1, replicas=2, tiers=["OnPrem", "SovereignCloud"]),
          workload("infer", rayjob("infer", submitter_seconds=900), gpus=1, replicas=1,
                   tiers=["OnPrem", "SovereignCloud"]))
    for name in ("tune", "infer"):
        wait_until(f"{name} Running on-prem", lambda n=name: phase_on(fleet, ns, n, "Running", ONPREM), timeout=150)
    fleet.kubectl("annotate", "aiworkload", "-n", ns, "tune", "infer", "tenbin.io/replace=now")
    for resource, name in (("pytorchjobs", "tune"), ("rayjobs", "infer")):
        def asked(r: str = resource) -> bool:
            objs = member_objects(fleet, ONPREM, ns, r)
            return bool(objs) and "tenbin.io/checkpoint-requested" in (objs[0]["metadata"].get("annotations") or {})
        wait_until(f"checkpoint requested on the {resource[:-1]}", asked, timeout=60)
        assert member_objects(fleet, SOVEREIGN, ns, resource) == [], f"{name} started before its checkpoint"
        fleet.kubectl("annotate", resource, "-n", ns, name, f"tenbin.io/checkpoint-done={name}-step-3",
                      cluster=ONPREM)
    for name in ("tune", "infer"):
        wait_until(f"{name} Running on the sovereign member",
                   lambda n=name: phase_on(fleet, ns, n, "Running", SOVEREIGN), timeout=150)
    [tune] = member_objects(fleet, SOVEREIGN, ns, "pytorchjobs")
    for role in ("Master", "Worker"):
        hints = tune["spec"]["pytorchReplicaSpecs"][role]["template"]["metadata"]["annotations"]
        assert (hints["tenbin.io/checkpoint"], hints["tenbin.io/resume-from"]) == ("tune-step-3", ONPREM)
    [infer] = member_objects(fleet, SOVEREIGN, ns, "rayjobs")
    spec = infer["spec"]["rayClusterSpec"]
    for template in (spec["headGroupSpec"]["template"], spec["workerGroupSpecs"][0]["template"]):
        assert template["metadata"]["annotations"]["tenbin.io/checkpoint"] == "infer-step-3"
    wait_until("the source PyTorchJob and RayJob gone", lambda: not (
        member_objects(fleet, ONPREM, ns, "pytorchjobs") or member_objects(fleet, ONPREM, ns, "rayjobs")),
        timeout=60)


def ready_reason(fleet: Fleet, ns: str, name: str) -> str | None:
    return next((c.get("reason") for c in status(fleet, ns, name).get("conditions") or [] if c["type"] == "Ready"),
                None)


def test_a_lost_members_jobset_waits_for_a_fence_and_its_lws_moves_on(controllers: Fleet, ns: str) -> None:
    """The on-prem member's apiserver goes away with a JobSet and a LeaderWorkerSet on it. The
    LeaderWorkerSet (long-running: two copies for a while are how it rolls out anyway) starts on the sovereign
    member at once; the JobSet runs once, and from the hub a dead member and a cut-off one look the same, so
    it waits until the member is fenced. When the member comes back the copies it kept are removed."""
    fleet = controllers
    tiers = ["OnPrem", "SovereignCloud"]
    apply(fleet, ns, workload("lost-train", jobset("lost-train", workers=1, run_seconds=600), gpus=1, replicas=1,
                              tiers=tiers),
          workload("lost-chat", lws("lost-chat", size=2, gpus=1), gpus=1, replicas=2, tiers=tiers))
    for name in ("lost-train", "lost-chat"):
        wait_until(f"{name} Running on-prem", lambda n=name: phase_on(fleet, ns, n, "Running", ONPREM), timeout=120)

    fleet.stop(f"{ONPREM}-kube-apiserver")
    try:
        wait_until("lost-chat Running on the sovereign member",
                   lambda: phase_on(fleet, ns, "lost-chat", "Running", SOVEREIGN), timeout=120)
        wait_until("lost-train awaits a fence", lambda: ready_reason(fleet, ns, "lost-train") == "AwaitingFence",
                   timeout=60)
        assert member_objects(fleet, SOVEREIGN, ns, "jobsets") == [], "a second copy of a run-once JobSet"
        assert status(fleet, ns, "lost-train")["placement"]["cluster"] == ONPREM
        fleet.kubectl("annotate", "gpucluster", ONPREM, "tenbin.io/fenced=true")  # "it is really down"
        wait_until("lost-train Running on the sovereign member",
                   lambda: phase_on(fleet, ns, "lost-train", "Running", SOVEREIGN), timeout=120)
        for name in ("lost-train", "lost-chat"):
            moves = [(h.get("reason"), h.get("from")) for h in status(fleet, ns, name).get("history", [])
                     if h["event"] == "Migrated"]
            assert moves == [("ClusterLost", ONPREM)], (name, moves)
    finally:
        bring_member_back(fleet, ONPREM)
        addons.restart(fleet, ONPREM, SERVES[ONPREM], log=lambda _m: None)  # the member comes back whole
    wait_until("the fence consumed", lambda: "tenbin.io/fenced" not in (json.loads(fleet.kubectl(
        "get", "gpucluster", ONPREM, "-o", "json").stdout)["metadata"].get("annotations") or {}), timeout=60)
    for resource in ("jobsets", "leaderworkersets"):
        wait_until(f"the {resource} the on-prem member kept removed",
                   lambda r=resource: member_objects(fleet, ONPREM, ns, r) == [], timeout=120)
        assert [o["metadata"]["name"] for o in member_objects(fleet, SOVEREIGN, ns, resource)] == \
            ["lost-train" if resource == "jobsets" else "lost-chat"]


def test_a_lost_members_pytorchjob_and_rayjob_wait_for_a_fence_then_run_on_a_member_that_serves_them(
        controllers: Fleet, ns: str) -> None:
    """A PyTorchJob and a RayJob are run-once work, like a JobSet: when their member is lost they wait for a
    fence (a cut-off member may still be training), then start on the sovereign member, which serves both
    kinds too, with the resume hints on every pod template. The copies the lost member kept are removed, with
    their pods, when it returns."""
    fleet = controllers
    apply(fleet, ns, workload("lost-tune", pytorchjob("lost-tune"), gpus=1, replicas=2,
                              tiers=["OnPrem", "SovereignCloud"]),
          workload("lost-infer", rayjob("lost-infer", submitter_seconds=900), gpus=1, replicas=1,
                   tiers=["OnPrem", "SovereignCloud"]))
    for name in ("lost-tune", "lost-infer"):
        wait_until(f"{name} Running on-prem", lambda n=name: phase_on(fleet, ns, n, "Running", ONPREM), timeout=150)
    uids = {name: uid_of(fleet, ns, name) for name in ("lost-tune", "lost-infer")}

    fleet.stop(f"{ONPREM}-kube-apiserver")
    try:
        for name in ("lost-tune", "lost-infer"):
            wait_until(f"{name} awaits a fence", lambda n=name: ready_reason(fleet, ns, n) == "AwaitingFence",
                       timeout=60)
        assert member_objects(fleet, SOVEREIGN, ns, "pytorchjobs") == [], "a second copy of a run-once PyTorchJob"
        assert member_objects(fleet, SOVEREIGN, ns, "rayjobs") == [], "a second copy of a run-once RayJob"
        fleet.kubectl("annotate", "gpucluster", ONPREM, "tenbin.io/fenced=true")  # "it is really down"
        for name in ("lost-tune", "lost-infer"):
            wait_until(f"{name} Running on the sovereign member",
                       lambda n=name: phase_on(fleet, ns, n, "Running", SOVEREIGN), timeout=150)
            st = status(fleet, ns, name)
            assert [(h.get("reason"), h.get("from")) for h in st.get("history", []) if h["event"] == "Migrated"] \
                == [("ClusterLost", ONPREM)]
        assert "PyTorchJob running" in status(fleet, ns, "lost-tune")["message"]
        assert "RayJob running" in status(fleet, ns, "lost-infer")["message"]
        [target] = member_objects(fleet, SOVEREIGN, ns, "pytorchjobs")
        for role in ("Master", "Worker"):
            template = target["spec"]["pytorchReplicaSpecs"][role]["template"]
            assert template["metadata"]["labels"]["tenbin.io/workload-uid"] == uids["lost-tune"]
            assert template["metadata"]["annotations"]["tenbin.io/resume-from"] == ONPREM
        [ray] = member_objects(fleet, SOVEREIGN, ns, "rayjobs")
        cluster_spec = ray["spec"]["rayClusterSpec"]
        for template in (cluster_spec["headGroupSpec"]["template"], cluster_spec["workerGroupSpecs"][0]["template"]):
            assert template["metadata"]["labels"]["tenbin.io/workload-uid"] == uids["lost-infer"]
            assert template["metadata"]["annotations"]["tenbin.io/resume-from"] == ONPREM
        assert [p for p in member_pods(fleet, SOVEREIGN, ns)
                if p["metadata"]["labels"].get("tenbin.io/workload-uid") == uids["lost-infer"]
                and p["spec"].get("nodeName")], "the RayCluster's pods run on the sovereign member"
    finally:
        bring_member_back(fleet, ONPREM)
        addons.restart(fleet, ONPREM, SERVES[ONPREM], log=lambda _m: None)  # the member comes back whole
    wait_until("the fence consumed", lambda: "tenbin.io/fenced" not in (json.loads(fleet.kubectl(
        "get", "gpucluster", ONPREM, "-o", "json").stdout)["metadata"].get("annotations") or {}), timeout=60)
    wait_until("the PyTorchJob, the RayJob and the pods the on-prem member kept removed", lambda: not (
        member_objects(fleet, ONPREM, ns, "pytorchjobs") or member_objects(fleet, ONPREM, ns, "rayjobs")
        or [p for p in member_pods(fleet, ONPREM, ns)
            if p["metadata"]["labels"].get("tenbin.io/workload-uid") in uids.values()]),
        timeout=120)


def refuse_jobsets_without(fleet: Fleet, member: str, ns: str, config_map: str) -> None:
    """The member itself refuses to create a JobSet in `ns` while ConfigMap `config_map` is not there (a
    ValidatingAdmissionPolicy whose parameter is that ConfigMap, parameterNotFoundAction Deny): a JobSet that
    arrived before its ConfigMap would be refused, and the placement would fail."""
    name = f"needs-config-{ns}"
    docs = [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail", "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                  "matchConstraints": {"resourceRules": [{"apiGroups": ["jobset.x-k8s.io"], "apiVersions": ["*"],
                                                          "operations": ["CREATE"], "resources": ["jobsets"]}]},
                  "validations": [{"expression": "true"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"],
                  "paramRef": {"name": config_map, "parameterNotFoundAction": "Deny"},
                  "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}},
    ]
    fleet.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs), cluster=member)


def drop_admission(fleet: Fleet, member: str, ns: str) -> None:
    name = f"needs-config-{ns}"
    fleet.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found", cluster=member,
                  check=False)
    fleet.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found", cluster=member, check=False)


def test_dependencies_arrive_before_a_jobset_move_with_it_and_leave_with_it(controllers: Fleet, ns: str) -> None:
    """ConfigMap, ServiceAccount and (opted in) Secret of a JobSet: in the member before the JobSet (the member
    refuses a JobSet without its ConfigMap), owned by it, updated when the hub's copy changes, copied to the
    target of a move and collected from the source by the source member's garbage collector, and gone from the
    target when the AIWorkload is deleted."""
    fleet = controllers
    fleet.kubectl("label", "namespace", ns, "tenbin.io/copy-secrets=true")
    fleet.kubectl("patch", "placementpolicy", "default", "--type=merge", "-p",
                  '{"spec":{"copySecretsFor":["Internal"]}}')
    try:
        for member in (ONPREM, SOVEREIGN):
            refuse_jobsets_without(fleet, member, ns, "train-config")
        fleet.kubectl("create", "configmap", "-n", ns, "train-config", "--from-literal=lr=0.1")
        fleet.kubectl("create", "serviceaccount", "-n", ns, "trainer")
        fleet.kubectl("create", "secret", "generic", "-n", ns, "hf-token", "--from-literal=token=s3cret")
        js = jobset("tuned", workers=1, run_seconds=600)
        for rj in js["spec"]["replicatedJobs"]:
            spec = rj["template"]["spec"]["template"]["spec"]
            spec["serviceAccountName"] = "trainer"
            spec["volumes"] = [{"name": "config", "configMap": {"name": "train-config"}}]
            spec["containers"][0]["env"] = [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]
        apply(fleet, ns, workload("tuned", js, gpus=1, replicas=1, tiers=["OnPrem", "SovereignCloud"]))
        wait_until("tuned Running", lambda: status(fleet, ns, "tuned").get("phase") == "Running", timeout=120)
        src = status(fleet, ns, "tuned")["placement"]["cluster"]
        dst = SOVEREIGN if src == ONPREM else ONPREM

        def copies(member: str) -> dict[str, dict[str, Any]]:
            out = {}
            for resource in ("configmaps", "serviceaccounts", "secrets"):
                for o in member_objects(fleet, member, ns, resource):
                    if (o["metadata"].get("labels") or {}).get("tenbin.io/dependency") == "true":
                        out[f"{o['kind']}/{o['metadata']['name']}"] = o
            return out

        def owned_by_jobset(member: str) -> bool:
            objs = member_objects(fleet, member, ns, "jobsets")
            got = copies(member)
            return bool(objs) and set(got) == {"ConfigMap/train-config", "ServiceAccount/trainer", "Secret/hf-token"} \
                and all([r["uid"] for r in o["metadata"].get("ownerReferences") or []] == [objs[0]["metadata"]["uid"]]
                        for o in got.values())

        wait_until("the copies in the member owned by the JobSet", lambda: owned_by_jobset(src), timeout=60)
        got = copies(src)
        assert got["ConfigMap/train-config"]["data"] == {"lr": "0.1"}
        assert got["Secret/hf-token"]["data"] == {"token": "czNjcmV0"}
        cond = next(c for c in status(fleet, ns, "tuned")["conditions"] if c["type"] == "DependenciesSynced")
        assert cond["status"] == "True", cond

        fleet.kubectl("patch", "configmap", "-n", ns, "train-config", "--type=merge", "-p", '{"data":{"lr":"0.2"}}')
        wait_until("the change copied in the member", lambda: copies(src)["ConfigMap/train-config"]["data"]
                   == {"lr": "0.2"}, timeout=90)

        fleet.kubectl("annotate", "aiworkload", "-n", ns, "tuned", "tenbin.io/replace=now")
        wait_until("checkpoint requested", lambda: any(
            "tenbin.io/checkpoint-requested" in (o["metadata"].get("annotations") or {})
            for o in member_objects(fleet, src, ns, "jobsets")), timeout=60)
        fleet.kubectl("annotate", "jobset", "-n", ns, "tuned", "tenbin.io/checkpoint-done=step-1", cluster=src)
        wait_until(f"tuned Running on {dst}",
                   lambda: phase_on(fleet, ns, "tuned", "Running", dst), timeout=120)
        wait_until("the copies on the target owned by its JobSet", lambda: owned_by_jobset(dst),
                   timeout=60)
        assert copies(dst)["ConfigMap/train-config"]["data"] == {"lr": "0.2"}
        wait_until("the source's copies collected with its JobSet", lambda: not member_objects(
            fleet, src, ns, "jobsets") and not copies(src), timeout=90)

        fleet.kubectl("delete", "aiworkload", "-n", ns, "tuned")
        wait_until("the target's copies collected with its JobSet", lambda: not member_objects(
            fleet, dst, ns, "jobsets") and not copies(dst), timeout=90)
        # the member's check is real: with the ConfigMap gone, it refuses a JobSet there
        probe = {**jobset("probe", workers=1), "metadata": {"name": "probe", "namespace": ns}}
        res = fleet.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), cluster=dst,
                            check=False)
        assert res.returncode != 0 and "no params found" in res.stderr, res.stderr
        hub_cm = json.loads(fleet.kubectl("get", "configmap", "-n", ns, "train-config", "-o", "json").stdout)
        assert hub_cm["data"] == {"lr": "0.2"}, "the hub's own ConfigMap is the user's: never touched"
    finally:
        fleet.kubectl("patch", "placementpolicy", "default", "--type=json", "-p",
                      '[{"op":"remove","path":"/spec/copySecretsFor"}]', check=False)
        for member in (ONPREM, SOVEREIGN):
            drop_admission(fleet, member, ns)


def test_a_kind_only_the_policy_declares_goes_where_it_is_served_and_reads_as_declared(
        controllers: Fleet, ns: str) -> None:
    """Volcano's Job is refused without the policy's declaration (unit and memory tests); with it, Tenbin asks
    each member's API discovery for batch.volcano.sh/v1alpha1, so the sovereign member (no such CRD) is ruled
    out with the reason, labels both task templates, and reads status.state.phase as the policy says."""
    fleet = controllers
    apply(fleet, ns,
          workload("vj", vcjob("vj", workers=1), gpus=1, replicas=2, tiers=["OnPrem", "SovereignCloud"]),
          workload("vj-sovereign", vcjob("vj-sovereign", workers=1), gpus=1, replicas=2, tiers=["SovereignCloud"]))
    wait_until("vj-sovereign Unschedulable: the sovereign member does not serve Volcano's Job", lambda: (
        status(fleet, ns, "vj-sovereign").get("phase") == "Unschedulable"
        and "Job not served" in str(status(fleet, ns, "vj-sovereign").get("message"))), timeout=120)
    wait_until("vj placed on-prem", lambda: phase_on(fleet, ns, "vj", "Scheduled", ONPREM), timeout=120)
    assert not member_objects(fleet, SOVEREIGN, ns, "jobs.batch")  # never mistaken for a batch/v1 Job
    uid = uid_of(fleet, ns, "vj")
    vj = run_like_volcano(fleet, ONPREM, ns, "vj")
    assert [t["template"]["metadata"]["labels"]["tenbin.io/workload-uid"] for t in vj["spec"]["tasks"]] == [uid, uid]
    wait_until("the Job's 2 pods bound in the member", lambda: sum(
        1 for p in member_pods(fleet, ONPREM, ns) if p["spec"].get("nodeName")
        and p["metadata"]["labels"].get("tenbin.io/workload-uid") == uid) == 2, timeout=60)
    assert status(fleet, ns, "vj")["phase"] == "Scheduled"  # bound pods are not Volcano's word that it runs
    volcano_phase(fleet, ONPREM, ns, "vj", "Running")
    wait_until("vj Running, read from status.state.phase", lambda: phase_on(fleet, ns, "vj", "Running", ONPREM),
               timeout=60)
    assert "status.state.phase Running" in status(fleet, ns, "vj")["message"]
    volcano_phase(fleet, ONPREM, ns, "vj", "Completed")
    wait_until("vj Succeeded", lambda: phase_on(fleet, ns, "vj", "Succeeded", ONPREM), timeout=60)
    fleet.kubectl("delete", "aiworkload", "-n", ns, "vj", "vj-sovereign")
    wait_until("the Volcano Job and its pods gone from the member", lambda: not (
        member_objects(fleet, ONPREM, ns, VCJOBS)
        or [p for p in member_pods(fleet, ONPREM, ns) if p["metadata"]["labels"].get("tenbin.io/workload-uid")]),
        timeout=120)
