"""A small Prometheus HTTP API client (instant and range queries).

Thin on purpose: two endpoints, JSON in, floats out. (prometheus-api-client
would bring pandas and matplotlib-era dependencies for the same two calls.)
Errors name the query and Prometheus' own message.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from matchlab.errors import QueryError, WaitTimeoutError
from matchlab.waiting import wait_until

QUERY_TIMEOUT_S = 15.0
# A target's scrape time is recorded just before the scrape's samples are committed.
COMMIT_MARGIN_S = 0.2


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value)


class PromClient:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=QUERY_TIMEOUT_S)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, params: dict) -> dict:
        try:
            resp = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise QueryError(f"Prometheus at {self.url} unreachable for {params.get('query')!r}: {exc}") from None
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"query {params.get('query')!r} failed: HTTP {resp.status_code} {body.get('error', resp.text[:200])}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_matrix(self, promql: str, at: float | None = None) -> list[Series]:
        """An instant query of a range vector (``metric[5m]``): each series' raw samples."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        """The single value of a query, or None if it returned nothing (or NaN)."""
        samples = [s for s in self.query(promql, at) if not math.isnan(s.value)]
        return samples[0].value if samples else None

    def wait_for(self, promql: str, timeout: float, what: str = "") -> list[Sample]:
        """Poll until the query returns at least one non-NaN sample."""
        return wait_until(
            lambda: [s for s in self.query(promql) if not math.isnan(s.value)],
            timeout,
            what=what or f"Prometheus query {promql!r} to return data",
            interval=1.0,
        )

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_for_scrapes(self, selects: Callable[[dict[str, str]], bool], timeout: float) -> bool:
        """Wait until every target ``selects`` (by its labels) has been scraped since this call began.

        Time is Prometheus' own (``time()``), so a cluster's clock may differ from this machine's.
        False if some target was not scraped within ``timeout`` (or none is selected).
        """
        since = self.scalar("time()")

        def fresh() -> bool:
            chosen = [t for t in self.targets() if selects(t["labels"])]
            return bool(chosen) and all(datetime.fromisoformat(t["lastScrape"]).timestamp() > since for t in chosen)

        try:
            wait_until(fresh, timeout, what="a scrape of every target", interval=0.2)
        except WaitTimeoutError:
            return False
        time.sleep(COMMIT_MARGIN_S)
        return True
