"""`tenbin simulate` as a user runs it: a subprocess, exit codes, JSON shape, one-line errors."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import DELETE, EXAMPLE_DIRS, EXAMPLES, ROOT, cluster_doc, policy_doc, with_change, workload_doc
from tenbin.api import AIWorkload, parse_object
from tenbin.scheduling import EffectivePolicy
from tenbin.services.validation import semantic_error
from tenbin.simulate import MAX_DEPTH, MAX_FILE_BYTES

# Every run gets an address-space limit: a regression of the input bounds fails with MemoryError (exit 1)
# instead of eating the machine. A normal run needs under 300 MiB.
MEMORY_LIMIT = 1 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenbin", "simulate", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False, preexec_fn=_limit_memory,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})


def write(path: Path, *docs: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def example_workloads() -> list[AIWorkload]:
    out = []
    for f in sorted((EXAMPLES / "workloads").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            w = parse_object(d)
            assert isinstance(w, AIWorkload)
            out.append(w)
    return out


def test_examples_json_shape_and_order() -> None:
    res = simulate(*[a for d in EXAMPLE_DIRS for a in ("-f", str(d))], "-o", "json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    out = json.loads(res.stdout)  # exactly one JSON object
    assert list(out) == ["placements"]
    assert [p["workload"] for p in out["placements"]] == [w.key for w in example_workloads()]
    for p in out["placements"]:
        assert set(p) == {"workload", "cluster", "gpuModel", "pricePerGPUHour", "score", "reason"}
        placed = p["cluster"] is not None
        assert all((p[k] is not None) == placed for k in ("gpuModel", "pricePerGPUHour", "score"))
        assert isinstance(p["reason"], str) and p["reason"] and "\n" not in p["reason"]
        if placed:
            assert 0 <= p["score"] <= 100


def test_whole_examples_directory_table() -> None:
    # examples/ also holds Argo CD manifests (not Tenbin objects: an input error), so name the Tenbin parts
    res = simulate("-f", "examples/fleet", "-f", "examples/policy", "-f", "examples/workloads")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "CLUSTER" in lines[0] and "JPY" in lines[0]
    for w in example_workloads():
        assert any(line.startswith(w.key + " ") for line in lines), w.key


def test_sequential_capacity_prices_in_base_currency_and_unschedulable_exit_0(tmp_path: Path) -> None:
    pol = policy_doc(rates={"USD": 150.0}, weights={"price": 1})
    fleet = [cluster_doc("cheap-us", tier="Hyperscaler", jurisdiction="US", gpus=[("H100-80GB", 8, 2.0, "USD")]),
             cluster_doc("dear-jp", gpus=[("H100-80GB", 8, 480, "JPY")])]
    ws = [workload_doc(f"w{i}", "team", count=8) for i in range(3)]
    f = write(tmp_path / "all.yaml", pol, *fleet, *ws)
    res = simulate("-f", f, "-o", "json")
    assert res.returncode == 0, res.stderr
    p = json.loads(res.stdout)["placements"]
    assert [x["cluster"] for x in p] == ["cheap-us", "dear-jp", None]
    assert p[0]["pricePerGPUHour"] == pytest.approx(2.0 * 150.0)
    assert p[1]["pricePerGPUHour"] == pytest.approx(480)
    assert p[2]["reason"].startswith("0/2 clusters fit")


def test_without_a_policy_the_builtin_defaults_apply(tmp_path: Path) -> None:
    f = write(tmp_path / "x.yml", cluster_doc("c"), workload_doc("w", None))
    res = simulate("-f", str(tmp_path), "-o", "json")
    assert res.returncode == 0, res.stderr
    [p] = json.loads(res.stdout)["placements"]
    assert p["workload"] == "default/w" and p["cluster"] == "c"
    assert Path(f).suffix == ".yml"
    assert EffectivePolicy().base_currency in simulate("-f", f).stdout.splitlines()[0]


def _case(name: str, docs: list[dict[str, Any]] | str, obj: str, field: str) -> tuple[str, Any, str, str]:
    return (name, docs, obj, field)


CASES = [
    _case("negative-count", [with_change(workload_doc("llm", "research"), "spec.gpu.count", -1)],
          "AIWorkload research/llm", "spec.gpu.count"),
    _case("unknown-tier", [with_change(cluster_doc("c1"), "spec.tier", "Edge")], "GPUCluster c1", "spec.tier"),
    _case("lower-case-jurisdiction", [with_change(cluster_doc("c1"), "spec.jurisdiction", "jp")],
          "GPUCluster c1", "spec.jurisdiction"),
    _case("wrong-type", [with_change(workload_doc("w"), "spec.replicas", "two")], "AIWorkload default/w",
          "spec.replicas"),
    _case("missing-required", [with_change(cluster_doc("c1"), "spec.gpus", DELETE)], "GPUCluster c1", "spec.gpus"),
    _case("unknown-enum", [workload_doc("w", classification="TopSecret")], "AIWorkload default/w",
          "spec.residency.dataClassification"),
    _case("unknown-kind", [{"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUPool", "metadata": {"name": "p"}}],
          "GPUPool p", "kind"),
    _case("foreign-api", [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}],
          "ConfigMap cm", "apiVersion"),
    _case("currency-without-rate", [policy_doc(rates={"USD": 150.0}),
                                     cluster_doc("eu", gpus=[("H100-80GB", 8, 3.0, "EUR")])],
          "GPUCluster eu", "spec.gpus[0].currency"),
    _case("budget-currency-without-rate", [cluster_doc("c1"), workload_doc("w", budget=(3, "GBP"))],
          "AIWorkload default/w", "spec.budget.currency"),
    _case("budget-without-currency", [with_change(workload_doc("w", budget=(1, "JPY")), "spec.budget",
                                                  {"maxPricePerGPUHour": 1})],
          "AIWorkload default/w", "spec.budget.currency"),
    _case("out-of-range-weight", [workload_doc("w", weights={"price": -1})], "AIWorkload default/w",
          "spec.placement.weights.price"),
    _case("duplicate", [cluster_doc("c1"), cluster_doc("c1")], "GPUCluster c1", "metadata.name"),
    _case("unknown-field", [with_change(cluster_doc("c1"), "spec.jurisdicton", "JP")], "GPUCluster c1",
          "spec.jurisdicton"),
]


@pytest.mark.parametrize(("name", "docs", "obj", "field"), CASES, ids=[c[0] for c in CASES])
def test_invalid_input_exits_2_with_one_line_naming_file_object_field(
    tmp_path: Path, name: str, docs: list[dict[str, Any]], obj: str, field: str
) -> None:
    f = write(tmp_path / f"{name}.yaml", *docs)
    res = simulate("-f", f)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert lines[0].startswith(f"{f}: {obj}: {field}: "), lines[0]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("a: [1, 2\n", "invalid YAML"), ("- just\n- a list\n", "expected a mapping"), (b"\xff\xfe", "not UTF-8")],
    ids=["bad-yaml", "not-a-mapping", "not-utf8"],
)
def test_unreadable_documents(tmp_path: Path, content: str | bytes, fragment: str) -> None:
    f = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content)
    res = simulate("-f", str(f), "-o", "json")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith(str(f)) and fragment in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    res = simulate("-f", "examples/fleet", "-f", str(missing))
    assert res.returncode == 2
    assert res.stderr.strip() == f"{missing}: no such file or directory"


def _one_input_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr[-2000:])
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


# ------------------------------------------------------------------------------------ bounded YAML input

def _laughs(indent: str) -> str:
    """Nine levels of nine aliases each: 342 bytes that expand to 9**9 (387 million) strings."""
    out = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        out.append(f"{indent}{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(out) + "\n"


def test_the_342_byte_alias_bomb_from_the_issue_is_refused_fast(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(_laughs(""))
    assert f.stat().st_size == 342
    line = _one_input_error(simulate("-f", str(f)))
    assert line.startswith(f"{f}: document 1: e[0]: alias *d: "), line
    assert "aliases" in line and "line 5" in line


def test_an_alias_bomb_inside_an_object_names_the_object_and_the_field(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    head = ("apiVersion: tenbin.io/v1alpha1\nkind: AIWorkload\nmetadata: {name: laughs, namespace: research}\n"
            "spec:\n  gpu: {count: 1}\n  template:\n    apiVersion: v1\n    kind: ConfigMap\n    data:\n")
    f.write_text(head + _laughs(" " * 6))
    line = _one_input_error(simulate("-f", str(f), "-o", "json"))
    assert line.startswith(f"{f}: AIWorkload research/laughs: spec.template.data.e[0]: alias *d: "), line


@pytest.mark.parametrize(
    ("text", "obj", "field"),
    [("apiVersion: tenbin.io/v1alpha1\nkind: GPUCluster\nmetadata: &m {name: c1, labels: *m}\n",
      "GPUCluster c1", "metadata.labels"),
     ("a: &a [1, *a]\n", "document 1", "a[1]"),
     (yaml.safe_dump(cluster_doc("c1")) + "---\nx: &x {y: {z: *x}}\n", "document 2", "x.y.z")],
    ids=["in-an-object", "bare", "second-document"],
)
def test_an_alias_to_its_own_ancestor_is_refused(tmp_path: Path, text: str, obj: str, field: str) -> None:
    f = tmp_path / "loop.yaml"
    f.write_text(text)
    line = _one_input_error(simulate("-f", str(f)))
    assert line.startswith(f"{f}: {obj}: {field}: alias "), line
    assert "contains itself" in line


def test_nesting_deeper_than_the_bound_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n")
    line = _one_input_error(simulate("-f", str(f)))
    assert line.startswith(f"{f}: document 1: a"), line
    assert f"deeper than {MAX_DEPTH} levels" in line


def test_a_file_larger_than_the_bound_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    with f.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)  # sparse: the test does not write 8 MiB
    line = _one_input_error(simulate("-f", "examples/fleet", "-f", str(f)))
    assert line.startswith(f"{f}: ") and str(MAX_FILE_BYTES + 1) in line and "8 MiB" in line


def test_ordinary_anchors_and_aliases_are_accepted_as_kubectl_accepts_them(tmp_path: Path) -> None:
    f = tmp_path / "anchors.yaml"
    f.write_text(yaml.safe_dump(cluster_doc("c1")) + "---\n" + """\
apiVersion: tenbin.io/v1alpha1
kind: AIWorkload
metadata: {name: shared, namespace: team}
spec:
  gpu: {count: &gpus 2}
  template:
    apiVersion: batch/v1
    kind: Job
    spec:
      template:
        spec:
          restartPolicy: Never
          initContainers:
            - {name: fetch, image: registry.example.com/fetch:1, resources: &res {limits: {nvidia.com/gpu: *gpus}}}
          containers:
            - {name: main, image: registry.example.com/train:1, resources: *res}
""")
    res = simulate("-f", str(f), "-o", "json")
    assert res.returncode == 0, res.stderr
    [p] = json.loads(res.stdout)["placements"]
    assert p["workload"] == "team/shared" and p["cluster"] == "c1"


# ----------------------------------------------------- the operator's semantic checks, one source of truth

def _with_template(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    return with_change(doc, "spec.template." + path, value)


def _deployment(pods: int, gpus: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [
                         {"name": "main", "image": "registry.example.com/serve:1",
                          "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}}}


GPU_FIELD = "spec.template.spec.template.spec.containers[].resources.limits[nvidia.com/gpu]"
SEMANTIC = [
    ("template-in-another-namespace", _with_template(workload_doc("w", "team"), "metadata", {"namespace": "other"}),
     "spec.template.metadata.namespace"),
    ("pods-ask-for-other-gpu-count", with_change(workload_doc("w", "team", count=2), "spec.template.spec.template"
                                                 ".spec.containers[0].resources.limits", {"nvidia.com/gpu": 1}),
     GPU_FIELD),
    ("job-parallelism-above-replicas", _with_template(workload_doc("w", "team", replicas=2), "spec.parallelism", 3),
     "spec.template.spec.parallelism"),
    ("deployment-replicas-above-replicas",
     with_change(workload_doc("w", "team"), "spec.template", _deployment(pods=3)), "spec.template.spec.replicas"),
    ("budget-currency-without-rate", workload_doc("w", "team", budget=(3, "GBP")), "spec.budget.currency"),
]


@pytest.mark.parametrize(("name", "doc", "field"), SEMANTIC, ids=[c[0] for c in SEMANTIC])
def test_simulate_refuses_what_the_operator_marks_valid_false(
    tmp_path: Path, name: str, doc: dict[str, Any], field: str
) -> None:
    # what the operator says about this spec (the same function marks it Valid=False on the hub) ...
    problem = semantic_error(doc, EffectivePolicy())
    assert problem is not None and problem[0] == field, problem
    # ... is exactly what simulate says, as its one-line input error
    f = write(tmp_path / f"{name}.yaml", cluster_doc("c1", gpus=[("H100-80GB", 16, 480, "JPY")]), doc)
    line = _one_input_error(simulate("-f", f))
    assert line == f"{f}: AIWorkload team/w: {problem[0]}: {problem[1]}"


def test_a_spec_the_operator_accepts_is_placed(tmp_path: Path) -> None:
    doc = with_change(workload_doc("w", "team", replicas=3), "spec.template", _deployment(pods=3))
    assert semantic_error(doc, EffectivePolicy()) is None
    f = write(tmp_path / "ok.yaml", cluster_doc("c1"), doc)
    res = simulate("-f", f, "-o", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["placements"][0]["cluster"] == "c1"


# ------------------------------------------------------------------------- stdin, -o yaml, mixed directories

def simulate_stdin(text: str | bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tenbin", "simulate", *args],
                          input=text.encode() if isinstance(text, str) else text, capture_output=True, cwd=ROOT,
                          timeout=120, check=False, preexec_fn=_limit_memory,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})


def _examples_text() -> str:
    return "".join(f"---\n{f.read_text()}\n" for d in EXAMPLE_DIRS for f in sorted(d.glob("*.yaml")))


def test_standard_input_reads_like_a_file_and_is_named_dash_in_errors(tmp_path: Path) -> None:
    from_files = simulate(*[a for d in EXAMPLE_DIRS for a in ("-f", str(d))], "-o", "json")
    from_stdin = simulate_stdin(_examples_text(), "-f", "-", "-o", "json")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout) == json.loads(from_files.stdout)

    bad = simulate_stdin(yaml.safe_dump(with_change(workload_doc("w"), "spec.replicas", "two")), "-f", "-")
    assert bad.returncode == 2 and bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [bad.stderr.decode().strip()]
    assert bad.stderr.decode().startswith("-: AIWorkload default/w: spec.replicas: ")

    twice = simulate_stdin("", "-f", "-", "-f", "-")
    assert twice.returncode == 2 and twice.stderr.decode().strip() == \
        "-: standard input given more than once (-f -)"


def test_standard_input_has_the_file_size_bound() -> None:
    res = simulate_stdin(b"#" * (MAX_FILE_BYTES + 10), "-f", "-")
    assert res.returncode == 2, res.stderr[-500:]
    assert res.stderr.decode().startswith(f"-: {MAX_FILE_BYTES + 1} bytes: larger than the 8 MiB")


def test_yaml_output_says_what_json_says() -> None:
    args = [a for d in EXAMPLE_DIRS for a in ("-f", str(d))]
    as_yaml = simulate(*args, "-o", "yaml")
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == json.loads(simulate(*args, "-o", "json").stdout)


def test_other_kinds_are_refused_unless_asked_to_skip_them(tmp_path: Path) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "train-config"}, "data": {"a": "b"}}
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "tenbin"}}
    f = write(tmp_path / "mixed.yaml", cluster_doc("c"), config_map, workload_doc("w"), app)

    refused = _one_input_error(simulate("-f", str(tmp_path)))
    assert refused.startswith(f"{f}: ConfigMap train-config: apiVersion: ") and "--skip-other-kinds" in refused

    res = simulate("-f", str(tmp_path), "--skip-other-kinds", "-o", "json")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        f"warning: {f}: skipped ConfigMap train-config (apiVersion 'v1' is not Tenbin's)",
        f"warning: {f}: skipped Application tenbin (apiVersion 'argoproj.io/v1alpha1' is not Tenbin's)"]
    [p] = json.loads(res.stdout)["placements"]
    assert (p["workload"], p["cluster"]) == ("default/w", "c")

    # a kind of Tenbin's own group that does not exist is a mistake, not someone else's object
    write(tmp_path / "pool.yaml", {"apiVersion": "tenbin.io/v1alpha1", "kind": "GPUPool", "metadata": {"name": "p"}})
    assert _one_input_error(simulate("-f", str(tmp_path), "--skip-other-kinds")).startswith(
        f"{tmp_path / 'pool.yaml'}: GPUPool p: kind: ")


def test_an_unquoted_no_gets_a_hint_to_quote_it(tmp_path: Path) -> None:
    doc = workload_doc("w", jurisdictions=["JP", "NO"])
    f = tmp_path / "no.yaml"
    f.write_text(yaml.safe_dump(doc).replace("'NO'", "NO"))  # as a user writes it
    line = _one_input_error(simulate("-f", str(f)))
    assert line.startswith(f"{f}: AIWorkload default/w: spec.residency.jurisdictions[1]: ")
    assert 'quote it: "NO"' in line


def test_attestations_are_judged_at_the_time_asked(tmp_path: Path) -> None:
    """`--at`: "where would this go once ISMAP lapses?" The label is the policy's once attested: the cluster
    that only claims it does not count."""
    pol = policy_doc()
    pol["spec"]["attestations"] = [{"label": "ismap", "clusters": ["cheap"], "validUntil": "2027-04-01T00:00:00Z"}]
    fleet = [cluster_doc("cheap", gpus=[("H100-80GB", 8, 300, "JPY")], residency_labels=["ismap"]),
             cluster_doc("claims", gpus=[("H100-80GB", 8, 200, "JPY")], residency_labels=["ismap"])]
    f = write(tmp_path / "all.yaml", pol, *fleet, workload_doc("w", "team", required_labels=["ismap"]))
    before = simulate("-f", f, "-o", "json", "--at", "2027-03-01T00:00:00Z")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["placements"][0]["cluster"] == "cheap"
    after = simulate("-f", f, "-o", "json", "--at", "2027-04-01T00:00:00Z")
    [p] = json.loads(after.stdout)["placements"]
    assert p["cluster"] is None and "ismap" in p["reason"]
    bad = simulate("-f", f, "--at", "next tuesday")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--at" in bad.stderr
