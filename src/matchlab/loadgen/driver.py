"""Where a load phase's requests are generated: this process (``HostLoadDriver``) or elsewhere.

The experiments hand every phase to one ``LoadDriver`` and get one ``LoadResult`` back, whoever sent
the requests; the in-cluster driver (``matchlab.k8s.load_driver``) runs the phase as Indexed Jobs, the
local one (``matchlab.loadgen.process_driver``) as load-generator processes on this machine. A driver
that runs the load elsewhere cannot call this process's request source, so sources carry a description
of their order flows (``FlowSpec``) that another process can rebuild exactly from the generator's
command line: shards, route, seed and mix, each with its share of the rate (``flow_loads``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from matchlab.errors import ConfigError
from matchlab.loadgen.flow import STATIONARY, OrderMix, hot_symbol_mix
from matchlab.loadgen.profile import LoadProfile
from matchlab.loadgen.remote_write import RemoteWriteExporter
from matchlab.loadgen.results import LoadResult
from matchlab.loadgen.runner import Request, RequestSource, run_load

if TYPE_CHECKING:
    from matchlab.stack.spec import Endpoints


@dataclass(frozen=True)
class FlowSpec:
    """One seeded order flow as ``python -m matchlab.loadgen`` rebuilds it: its shards' symbols, route, seed, mix."""

    shards: tuple[str, ...]
    via_gateway: bool
    seed: int
    mix: OrderMix = STATIONARY

    def mix_args(self) -> tuple[str, str | None]:
        """The generator's ``--mix`` and ``--hot-symbol`` for this mix; a mix it cannot express is an error."""
        if self.mix == STATIONARY:
            return "stationary", None
        if self.mix.hot_symbol and self.mix == hot_symbol_mix(self.mix.hot_symbol):
            return "hot", self.mix.hot_symbol
        raise ValueError(f"the load generator's command line has no way to express the order mix {self.mix}")

    def route_args(self, gateway: str | None, shard_urls: Mapping[str, str]) -> list[str]:
        """The generator's ``--gateway``/``--shards`` or ``--shard ID=URL`` for this flow at these addresses."""
        if self.via_gateway:
            if not gateway:
                raise ConfigError(f"a flow through the gateway (shards {','.join(self.shards)}) needs the gateway's URL")
            return ["--gateway", gateway, "--shards", ",".join(self.shards)]
        return [arg for s in self.shards for arg in ("--shard", f"{s}={shard_urls[s]}")]


class DescribedSource:
    """A request source that also says which flows it draws from, at what share of the rate."""

    def __init__(self, source: RequestSource, flows: tuple[tuple[float, FlowSpec], ...]) -> None:
        self.source = source
        self.flows = flows  # (share of the phase's rate, flow); shares add up to 1

    def __call__(self) -> Request:
        return self.source()


def flows_of(source: RequestSource) -> tuple[tuple[float, FlowSpec], ...]:
    """The flows a source draws from; a source built without a description cannot run elsewhere."""
    flows = getattr(source, "flows", None)
    if not flows:
        raise ValueError("this load phase's request source has no flow description (FlowSpec), so it can only run "
                         "in this process")
    return flows


def scaled(profile: LoadProfile, share: float) -> LoadProfile:
    """The same schedule shape at ``share`` of the rate."""
    if share == 1.0:
        return profile
    return LoadProfile.ramping(profile.start_rate * share, [(s.duration_s, s.target_rate * share) for s in profile.stages])


@dataclass
class PhaseLoad:
    """One phase as the experiments ask for it."""

    experiment: str
    phase: str
    profile: LoadProfile  # or a live-steered profile, for a driver that ``steers_live``
    source: RequestSource
    start_at: float  # Unix time of the schedule's t=0 (from the driver's ``schedule_start``)
    labels: dict[str, str] = field(default_factory=dict)  # on the remote-written client metrics
    exporter: RemoteWriteExporter | None = None  # this process's exporter (the host driver's)
    progress: Callable[[dict], None] | None = None
    endpoints: Endpoints | None = None  # where the stack answers this machine (for drivers running processes here)


@dataclass(frozen=True)
class FlowLoad:
    """One flow of a phase at its share of the phase's schedule: what one set of workers runs."""

    profile: LoadProfile
    flow: FlowSpec
    labels: dict[str, str]  # on its workers' client metrics (each worker adds its own ``worker``)
    number: int  # 1, 2, ... within the phase


def flow_loads(phase: PhaseLoad, driver: str) -> list[FlowLoad]:
    """The phase split by flow, for a driver whose senders run outside this process (fixed rates only).

    Where a phase mixes flows, their workers' series also carry ``flow``: worker 0 of one flow and worker
    0 of another would otherwise write the very same series and overwrite each other's counts.
    """
    if not isinstance(phase.profile, LoadProfile):
        raise ConfigError(f"{phase.experiment}/{phase.phase}: a live-steered load profile cannot run as load from "
                          f"{driver}; give it a fixed LoadProfile")
    flows = flows_of(phase.source)
    return [FlowLoad(scaled(phase.profile, share), flow,
                     {**phase.labels, **({"flow": str(number)} if len(flows) > 1 else {})}, number)
            for number, (share, flow) in enumerate(flows, 1)]


class LoadDriver(Protocol):
    name: str
    steers_live: bool  # False: the phase's rate is fixed when it starts (its senders are out of reach)

    def schedule_start(self) -> float:
        """The earliest Unix time a phase asked for now can start sending."""
        ...

    def run(self, phase: PhaseLoad) -> LoadResult:
        """Send the phase's schedule from ``phase.start_at``; the measurements of every request."""
        ...


class HostLoadDriver:
    """The open-model runner in this process (the default everywhere)."""

    name = "host"
    steers_live = True

    def schedule_start(self) -> float:
        return time.time()

    def run(self, phase: PhaseLoad) -> LoadResult:
        time.sleep(max(0.0, phase.start_at - time.time()))
        return run_load(phase.profile, phase.source, progress=phase.progress, exporter=phase.exporter)


def driver_for(backend) -> LoadDriver:
    """The backend's own load driver where it has one (``Backend.load_driver``), else the host's."""
    return backend.load_driver() or HostLoadDriver()
