"""A small async Kubernetes API client for the benchmark (aiohttp): fast writes, watches, /metrics.

The operator under test uses the official sync client; the benchmark uses its own lean client so that
the load generator and the measurements cost as little CPU as possible on a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

MUTATING = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")
_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+]+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class ApiError(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:300]}")
        self.status = status


class Api:
    """One apiserver: bearer token, fleet CA, a bounded connection pool."""

    def __init__(self, url: str, token: str, cafile: str, limit: int = 64) -> None:
        self.url = url.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=cafile)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            conn = aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit)
            self._session = aiohttp.ClientSession(connector=conn, headers=self._headers,
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                   ok: tuple[int, ...] = (200, 201), timeout: float = 60) -> dict[str, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self.session.request(method, self.url + path, data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            text = await r.text()
            if r.status not in ok:
                raise ApiError(r.status, text)
            return dict(json.loads(text)) if text else {}

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("POST", path, body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", path, body, content_type="application/merge-patch+json")

    async def get(self, path: str, ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
        return await self.call("GET", path, ok=ok)

    async def text(self, path: str) -> str:
        async with self.session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.status != 200:
                raise ApiError(r.status, await r.text())
            return await r.text()

    async def request_counts(self) -> dict[tuple[str, str], float]:
        """Mutating requests served so far, by (verb, resource[/subresource]), from apiserver_request_total."""
        out: dict[tuple[str, str], float] = {}
        for line in (await self.text("/metrics")).splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            labels = dict(_LABEL.findall(m.group("labels")))
            verb = labels.get("verb", "")
            if verb not in MUTATING:
                continue
            res = labels.get("resource", "")
            if labels.get("subresource"):
                res = f"{res}/{labels['subresource']}"
            out[(verb, res)] = out.get((verb, res), 0.0) + float(m.group("value"))
        return out

    async def watch(self, path: str, on_event: Callable[[str, dict[str, Any], float], None],
                    ready: asyncio.Event | None = None) -> None:
        """List then watch `path` (a collection) forever; `on_event(type, object, monotonic time)`.

        Objects present at the start are reported as "EXISTING". Restarts the watch when the server ends it.
        """
        listed = await self.get(path)
        for item in listed.get("items") or []:
            on_event("EXISTING", item, time.monotonic())
        rv = (listed.get("metadata") or {}).get("resourceVersion", "")
        if ready is not None:
            ready.set()
        sep = "&" if "?" in path else "?"
        while True:
            url = f"{self.url}{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=1800&resourceVersion={rv}"
            try:
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
                    if r.status != 200:
                        raise ApiError(r.status, await r.text())
                    buf = b""
                    async for chunk in r.content.iter_any():
                        now = time.monotonic()
                        buf += chunk
                        while b"\n" in buf:
                            line, buf = buf.split(b"\n", 1)
                            if not line.strip():
                                continue
                            ev = json.loads(line)
                            obj = ev.get("object") or {}
                            rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                            if ev.get("type") == "ERROR":
                                raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                            if ev.get("type") != "BOOKMARK":
                                on_event(str(ev.get("type")), obj, now)
            except (aiohttp.ClientError, ApiError):
                await asyncio.sleep(0.2)
                with contextlib.suppress(aiohttp.ClientError, ApiError):
                    listed = await self.get(path)
                    for item in listed.get("items") or []:
                        on_event("EXISTING", item, time.monotonic())
                    rv = (listed.get("metadata") or {}).get("resourceVersion", "")


def delta(after: Mapping[tuple[str, str], float],
          before: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], int]:
    out = {}
    for k, v in after.items():
        d = round(v - before.get(k, 0.0))
        if d:
            out[k] = d
    return out
