"""Would the simulation have found the fault classes? Put each old behaviour back, run the seeds, report.

Each mutant is one small edit of today's operator that restores a fault the live audit found (the fault
classes of the fault-class issue, and the two races found since). For each, the operator is copied to a
temporary directory, the edit applied there (never to the source tree), and `world.py` run over seeds
1..N until an invariant breaks. A mutant the simulation does not catch is a hole in its invariants.

    make mutants                 # every mutant, up to 40 seeds of 300 steps each
    .venv/bin/python tests/simulation/mutants.py --seeds 10 --only 6

Not part of `make test` (about 2-6 minutes); the fixes themselves are pinned by the regression tests.
Classes the in-process simulation cannot see by construction are tested against real parts instead:
10 (two operator processes and a Lease), and the CLI half of 8 (`tenbin simulate`'s checks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parents[1] / "operator" / "tenbin"


@dataclass(frozen=True)
class Mutant:
    fault: str
    """The fault class (issue 12's numbering) or race it restores."""
    what: str
    path: str
    """Relative to operator/tenbin/."""
    old: str
    new: str
    tests: tuple[str, ...] = ()
    """In-process tests that pin the fix, run when no random schedule catches the mutant."""


MUTANTS = [
    Mutant("1", "reservations per cluster, not per node: a burst may be spread so a whole-node pod never fits",
           "services/ledger.py",
           "        pending = self.pending_pods()\n        out: dict[tuple[str, str], int] = {}\n",
           "        return self.reserved()\n"),
    Mutant("2", "a member's refusal of a kind it does not serve is retried silently, its GPUs kept",
           "services/placement.py",
           "        body = self.w.workloads.get(key)\n        self.w.ledger.release(key)\n",
           "        if e.status == 404:\n            raise GatewayError(str(e))  # as if the member were away\n"
           "        body = self.w.workloads.get(key)\n        self.w.ledger.release(key)\n"),
    Mutant("2", "pods the member cannot schedule are not reported (no Ready=False PodsUnschedulable)",
           "services/member_sync.py",
           "    if obj.pods_unschedulable:\n",
           "    if False:\n"),
    Mutant("3", "only the first pod template of a kind is labelled (a JobSet's workers' GPUs counted twice)",
           "services/member_objects.py",
           "    templates = pod_templates(obj)\n",
           "    templates = pod_templates(obj)[:1]\n"),
    Mutant("4", "a deleted GPUCluster goes at once (no drain finalizer): its work is stranded",
           "services/member_sync.py",
           "        if st.deleting or DRAIN_FINALIZER in (meta.get(\"finalizers\") or []):\n",
           "        if True:\n"),
    Mutant("5", "the pod pin names only the table's spellings, not the product labels seen on the nodes",
           "services/member_objects.py",
           "    values.update(p for p in products or () if p and canonical_model(p) == model)\n",
           ""),
    Mutant("6", "a changed gpu.count or replicas keeps the old reservation",
           "services/placement.py",
           "            resized = self._resize(key, body, wl, cluster, placement.get(\"gpuModel\") or \"\")",
           "            resized = None"),
    Mutant("7", "a failed move is forgotten: no backoff, the same move is tried again at once",
           "services/migration_state.py",
           "        if e.get(\"event\") == Reason.MIGRATION_FAILED:\n",
           "        if False:\n",
           ("tests/unit/test_migration_decision.py::test_history_of_reads_failed_moves",)),
    Mutant("8", "explain adds the workload's own GPUs back as free even when its pods were never bound",
           "explain.py",
           "    return max(0, min(bound, workload.spec.total_gpus, row.allocated, row.allocatable - row.free))\n",
           "    return workload.spec.total_gpus\n"),
    Mutant("9", "a Job on an unreachable member is started elsewhere without a fence",
           "services/migration_steps.py",
           "    return str(annotations.get(FENCED_ANNOTATION, \"\")).lower() == \"true\"\n",
           "    return True\n"),
    Mutant("race b", "a copy being deleted is read as the running work",
           "services/member_sync.py",
           "            if (obj.body.get(\"metadata\") or {}).get(\"deletionTimestamp\"):\n",
           "            if False:\n",
           ("tests/simulation/test_races.py::test_a_copy_being_deleted_is_not_taken_for_the_running_work",)),
]


def apply(mutant: Mutant, root: Path) -> None:
    """Copy the package under `root` and apply the mutant's edit there (exactly one occurrence)."""
    shutil.copytree(PACKAGE, root / "tenbin", ignore=shutil.ignore_patterns("__pycache__"))
    target = root / "tenbin" / mutant.path
    text = target.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.fault} ({mutant.what}): {mutant.path} no longer has the code it "
                         f"edits exactly once; update MUTANTS")
    target.write_text(text.replace(mutant.old, mutant.new))


def hunt(mutant: Mutant, seeds: int, steps: int) -> tuple[int | None, str]:
    """The first seed whose run breaks an invariant on the mutant and the first line of what broke; 0 and
    the test when only a pinned test catches it; None when nothing does."""
    with tempfile.TemporaryDirectory(prefix="tenbin-mutant-") as tmp:
        apply(mutant, Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(HERE)])}
        for seed in range(1, seeds + 1):
            run = subprocess.run([sys.executable, str(HERE / "world.py"), "--seed", str(seed), "--steps", str(steps)],
                                 env=env, capture_output=True, text=True, timeout=600, check=False)
            if run.returncode != 0:
                lines = (run.stdout or run.stderr).strip().splitlines() or ["(no output)"]
                first = next((x for x in lines if x.startswith("seed ")), lines[-1])
                return seed, first
        for test in mutant.tests:
            run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                                 cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=600,
                                 check=False)
            if run.returncode != 0:
                return 0, f"not by a random schedule; by {test}"
    return None, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--only", help="run only the mutants of this fault class")
    ap.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    args = ap.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.fault == args.only]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda m: hunt(m, args.seeds, args.steps), chosen))
    escaped = 0
    for m, (seed, what) in zip(chosen, results, strict=True):
        if seed is None:
            escaped += 1
            print(f"class {m.fault:7} NOT CAUGHT in {args.seeds} seeds: {m.what}")
        elif seed == 0:
            print(f"class {m.fault:7} caught {what}: {m.what}")
        else:
            print(f"class {m.fault:7} caught at seed {seed:3}: {m.what}\n{'':16}{what[:300]}")
    print(f"{len(chosen) - escaped} of {len(chosen)} mutants caught ({args.seeds} seeds x {args.steps} steps at most)")
    return 1 if escaped else 0


if __name__ == "__main__":
    raise SystemExit(main())
