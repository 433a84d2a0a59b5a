"""The `tenbin` command: one console script, one sub-command per job.

Sub-commands import their implementation lazily so that `tenbin simulate` never pays for the
Kubernetes client and `tenbin dev` never pays for numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tenbin import __version__
from tenbin.services.settings import config_flags


def _cmd_simulate(args: argparse.Namespace) -> int:
    from tenbin.simulate import simulate_command

    return simulate_command(args.file, args.output, args.skip_other_kinds, args.at)


def _cmd_crds(args: argparse.Namespace) -> int:
    from tenbin.api.crdgen import crds_command

    rc = crds_command(Path(args.out), check=args.check)
    if args.docs:
        rc = max(rc, _reference(Path(args.docs), args.check))
    return rc


def _reference(path: Path, check: bool) -> int:
    from tenbin.api.reference import reference_markdown

    text = reference_markdown()
    if check:
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"tenbin crds --check: {path}: differs from what the models generate; run `make crds`",
                  file=sys.stderr)
            return 1
        print(f"tenbin crds --check: {path} matches the models")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _cmd_dev_up(args: argparse.Namespace) -> int:
    from tenbin.testbed.cli import dev_up

    return dev_up(args.file, args.state_dir, hub_only=args.hub_only, karmada=args.karmada)


def _cmd_dev_down(args: argparse.Namespace) -> int:
    from tenbin.testbed.cli import dev_down

    return dev_down(args.state_dir)


def _cmd_dev_status(args: argparse.Namespace) -> int:
    from tenbin.testbed.cli import dev_status

    return dev_status(args.state_dir)


def _cmd_run(args: argparse.Namespace) -> int:
    from tenbin.clusters.leader import LeaseConfig
    from tenbin.runner import RunOptions, run
    from tenbin.services.settings import Config

    cfg = Config(**{f.name: getattr(args, f.name) for f in config_flags()})
    lease = None if not args.leader_elect else LeaseConfig(
        name=args.lease_name, namespace=args.lease_namespace, lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline, retry_period=args.retry_period)
    return run(RunOptions(
        kubeconfig=args.kubeconfig, metrics_address=args.metrics_address, metrics_port=args.metrics_port,
        health_address=args.health_address, health_port=args.health_port, lease=lease,
        verbose=args.verbose, log_format=args.log_format, member_pod_security=args.member_pod_security, config=cfg,
    ))


def _cmd_explain(args: argparse.Namespace) -> int:
    from tenbin.explain import explain_command

    return explain_command(args.ref, args.kubeconfig, args.output)


def _cmd_agent(args: argparse.Namespace) -> int:
    from tenbin.agent.main import agent_command

    return agent_command(list(args.args))


def _lease_namespace() -> str:
    import os

    return os.environ.get("POD_NAMESPACE") or "tenbin-system"


def _at_least(kind: type, low: float) -> Any:
    """An argparse type: a number of `kind`, not below `low` (argparse names the flag when it is)."""
    def parse(text: str) -> Any:
        value = kind(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low:g}")
        return value
    parse.__name__ = kind.__name__  # "invalid float value: 'x'" names the kind expected
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenbin",
        description="Tenbin (天秤): place GPU work across a hybrid fleet by availability, residency and price.",
    )
    parser.add_argument("--version", action="version", version=f"tenbin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator against the hub cluster")
    run.add_argument("--kubeconfig", help="hub kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    run.add_argument("--metrics-address", default="0.0.0.0")
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0: off)")
    run.add_argument("--health-address", default="0.0.0.0")
    run.add_argument("--health-port", type=int, default=8081, help="liveness /healthz port (0: off)")
    le = run.add_argument_group("leader election (a coordination.k8s.io/v1 Lease; only its holder acts)")
    le.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                    help="act only while holding the Lease (default: on)")
    le.add_argument("--standalone", dest="leader_elect", action="store_false",
                    help="same as --no-leader-elect: a single replica, no Lease")
    le.add_argument("--lease-name", default="tenbin")
    le.add_argument("--lease-namespace", default=_lease_namespace(),
                    help="default: $POD_NAMESPACE, else tenbin-system")
    le.add_argument("--lease-duration", type=float, default=15.0,
                    help="seconds a standby waits without a renewal before it takes the Lease over")
    le.add_argument("--renew-deadline", type=float, default=10.0,
                    help="seconds after its last renewal at which the leader stops (exits); < --lease-duration")
    le.add_argument("--retry-period", type=float, default=2.0,
                    help="seconds between renewals, and between a standby's attempts; < --renew-deadline")
    groups = {"": run, "migration": run.add_argument_group("migration")}
    for f in config_flags():  # one flag per Config field
        groups[f.group].add_argument(f.flag, dest=f.name, type=_at_least(f.kind, f.minimum), default=f.default,
                                     metavar="SECONDS" if f.name.endswith("_seconds") else "N",
                                     help=f"{f.help} (default: {f.default:g})")
    run.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--log-format", choices=["text", "json"], default="text",
                     help="text lines, or one JSON object per line (the object it is about under \"object\")")
    run.add_argument("--member-pod-security", choices=["baseline", "restricted", "privileged", "none"],
                     default="baseline",
                     help="Pod Security level enforced on the namespaces Tenbin creates in members (none: no "
                          "label, the member's default); existing namespaces are left as they are (default: "
                          "baseline)")
    run.set_defaults(func=_cmd_run)

    sim = sub.add_parser("simulate", help="where would these workloads go, at what price (no cluster needed)")
    sim.add_argument("-f", "--file", action="append", required=True, metavar="PATH",
                     help="YAML file (multi-document), directory of *.yaml/*.yml, or - for standard input; "
                          "repeatable")
    sim.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    sim.add_argument("--skip-other-kinds", action="store_true",
                     help="skip documents outside Tenbin's API group (ConfigMaps, Secrets, ...) with a warning "
                          "each, instead of refusing them")
    sim.add_argument("--at", metavar="TIME", help="judge the policy's attestations at this RFC 3339 instant, "
                                                   "e.g. 2027-04-01T00:00:00Z (default: now)")
    sim.set_defaults(func=_cmd_simulate)

    exp = sub.add_parser("explain", help="every candidate cluster for one AIWorkload: scores and rejections")
    exp.add_argument("ref", metavar="NAMESPACE/NAME")
    exp.add_argument("--kubeconfig", help="hub kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    exp.add_argument("-o", "--output", choices=["table", "json"], default="table")
    exp.set_defaults(func=_cmd_explain)

    crds = sub.add_parser("crds", help="generate the CRD YAML from the API models")
    crds.add_argument("--out", default="crds", help="directory to write (default: crds)")
    crds.add_argument("--check", action="store_true", help="fail if the files on disk differ from the models")
    crds.add_argument("--docs", metavar="PATH", help="also write (or check) the Markdown CRD reference")
    crds.set_defaults(func=_cmd_crds)

    dev = sub.add_parser("dev", help="a local hybrid fleet on real Kubernetes control planes")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    up = dev_sub.add_parser("up", help="start a hub and one member control plane per GPUCluster")
    up.add_argument("-f", "--file", action="append", metavar="FLEET_PATH",
                    help="GPUCluster YAML file or directory (default: examples/fleet)")
    up.add_argument("--state-dir", metavar="DIR", help="where kubeconfigs, logs and PIDs live")
    up.add_argument("--hub-only", action="store_true", help="start only the hub control plane")
    up.add_argument("--karmada", action="store_true",
                    help="also start a Karmada control plane and join the members (testbed/build-karmada.sh)")
    up.set_defaults(func=_cmd_dev_up)
    down = dev_sub.add_parser("down", help="stop every process 'dev up' started and remove its state")
    down.add_argument("--state-dir", metavar="DIR")
    down.set_defaults(func=_cmd_dev_down)
    status = dev_sub.add_parser("status", help="show the running fleet")
    status.add_argument("--state-dir", metavar="DIR")
    status.set_defaults(func=_cmd_dev_status)
    agent = sub.add_parser("agent", add_help=False,
                           help="the NVML node agent (a DaemonSet on member clusters); 'tenbin agent --help'")
    agent.add_argument("args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=_cmd_agent)
    return parser


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `ls | head` when the reader left early


def main(argv: list[str] | None = None) -> int:
    """Every sub-command; output into a pipe whose reader is gone (`tenbin ... | head`) ends quietly."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # inside the try: an EPIPE here is caught, not reported at interpreter exit
    except BrokenPipeError:
        # The Python docs' recipe (library/signal.html, "Note on SIGPIPE"): point stdout at /dev/null so the
        # interpreter's final flush does not fail again, and leave without a word; nobody reads any more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:  # the agent parses its own flags (argparse REMAINDER would swallow none of them)
        from tenbin.agent.main import agent_command

        return agent_command(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("tenbin: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
