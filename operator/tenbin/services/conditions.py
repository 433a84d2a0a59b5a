"""Status conditions and timestamps, as every AIWorkload and GPUCluster status writer builds them."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any


def now_iso(now: float | None = None) -> str:
    t = dt.datetime.fromtimestamp(now if now is not None else time.time(), dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp as the API writes it; None when absent or unreadable."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def set_condition(conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str,
                  generation: int | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Conditions with one replaced (lastTransitionTime kept when the status does not change)."""
    out = [dict(c) for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    ltt = old.get("lastTransitionTime") if old and old.get("status") == status else now_iso(now)
    new: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message[:1024],
                           "lastTransitionTime": ltt}
    if generation is not None:
        new["observedGeneration"] = generation
    out.append(new)
    out.sort(key=lambda c: c["type"])
    return out
