"""Summarise a py-spy `--format raw` profile (collapsed stacks): where the operator's samples go.

    python bench/pyspy_top.py PROFILE.txt [--top 25] [--active]

Prints the functions with the most samples, inclusive (anywhere on the stack) and self (top of the stack).
`--active` leaves out idle samples (threads waiting in select/epoll/locks), to see what uses the CPU.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

IDLE = ("select (selectors.py", "epoll", "wait (threading.py", "_worker (concurrent/futures/thread.py",
        "run_forever", "_run_once (asyncio/base_events.py")


def tally(profile: Path, active: bool = False) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, inclusive counts, self counts) per function of a raw py-spy profile."""
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if active and any(m in frames[-1] for m in IDLE):
            continue
        count = int(n)
        total += count
        self_[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    return total, incl, self_


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--active", action="store_true")
    args = ap.parse_args(argv)
    total, incl, self_ = tally(args.profile, args.active)
    print(f"{total} samples{' (active only)' if args.active else ''}")
    print("\ninclusive:")
    for f, c in incl.most_common(args.top):
        print(f"{100 * c / total:6.1f}%  {f}")
    print("\nself:")
    for f, c in self_.most_common(args.top):
        print(f"{100 * c / total:6.1f}%  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
