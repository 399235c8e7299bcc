"""The deployment host: serves requests under the versions assigned to it.

A host holds one :class:`Assignment` (the control version of every
configuration, and during an experiment or a promotion wave the
experimental versions and the share of requests that get them). Each
request's variant is ``variant_for(request id, experiment id, fraction)``,
so a retried request id lands in the same variant.

Outcomes are buffered per (step, variant) and published to the metrics
backend every ``report_interval``; a publish that fails (metrics outage) is
retried with the next one, outcomes are not dropped. A crash loses the
unpublished buffer, as a real host would. On every (re)start the host reads
its assignment from the store, so it comes back with exactly the versions
the controller assigned to it, whatever it missed while it was down.

Traffic: with a service model the host generates Poisson arrivals at its
share of the fleet's ``request_rate`` on the runtime clock; with an
application handler it serves the ``Serve`` messages it is sent.
"""

from __future__ import annotations

import math
import random

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._context import DeploymentContext, DeploymentError
from actors.deploy._model import Request
from actors.deploy._records import Assignment, MetricsReport, VariantOutcomes
from actors.deploy._variant import variant_for
from runtime import Actor, Message

_decode_assignment = msgspec.msgpack.Decoder(Assignment).decode


class Assign(Message, frozen=True):
    """Run ``assignment`` from now on (ignored unless its revision is newer)."""

    assignment: Assignment


class Tick(Message, frozen=True):
    """Serve the requests that arrived since the previous tick."""


class Flush(Message, frozen=True):
    """Publish buffered outcomes to the metrics backend."""


class Serve(Message, frozen=True):
    """Serve one application request through the embedding handler."""

    request_id: str
    payload: bytes = b""


class ReadHostStatus(Message, frozen=True):
    """Answered with the host's :class:`HostStatus`."""


class Retire(Message, frozen=True):
    """The deployment is over: publish what is buffered and stop."""


HostMsg = Assign | Tick | Flush | Serve | ReadHostStatus | Retire


class HostStatus(msgspec.Struct, frozen=True):
    """What a host runs right now."""

    host: str
    revision: int
    step: str
    control: dict[str, str]
    experiment: dict[str, str]
    fraction: float
    buffered_requests: int


class Served(msgspec.Struct, frozen=True):
    """The answer to ``Serve``: the variant, versions, latency and the handler's result."""

    request_id: str
    variant: str
    configs: dict[str, str]
    latency: float
    ok: bool
    result: object = None
    error: str = ""


class _Buffer:
    __slots__ = ("errors", "latencies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth below 30, a rounded normal above)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class DeploymentHost(Actor[HostMsg]):
    """One host of the fleet; its name is the one the controller assigns to."""

    mailbox_capacity = 10_000

    def __init__(self, context: DeploymentContext) -> None:
        self.ctx = context
        self.assignment = Assignment(0, "initial", context.initial_controls())
        self.configs: dict[str, dict[str, str]] = {}
        self.buffer: dict[tuple[str, str], _Buffer] = {}
        self.pending: list[MetricsReport] = []
        self.seq = 0
        self.last_tick = 0.0

    @property
    def host_name(self) -> str:
        """The host's name in the deployment (the name the controller assigns to)."""
        return self.name

    async def started(self) -> None:
        self.rng = random.Random(self.random.getrandbits(64))
        self.nonce = self.rng.getrandbits(32)
        self.ctx.ledger.started(self.ctx.wall(), self.host_name)

    async def recover(self) -> None:
        """Come back with exactly the assigned versions, then resume traffic and reports."""
        ctx = self.ctx
        stored = await self.runtime.store.get(keys.host_key(ctx.spec.deployment, self.host_name))
        if stored is not None:
            self._apply(_decode_assignment(stored.value), "recover")
        else:
            self._apply(self.assignment, "recover")
        self.last_tick = self.now()
        if ctx.host_rate > 0:
            self.send_every(ctx.tick, Tick())
        self.send_every(ctx.spec.report_interval, Flush())

    async def stopped(self) -> None:
        """A crash loses what was not yet published (a planned stop is not counted)."""
        if not self.ctx.stopping:
            self.ctx.ledger.lost(sum(b.requests for b in self.buffer.values()) + sum(
                v.requests for r in self.pending for v in r.variants.values()))

    async def receive(self, msg: HostMsg) -> object:
        match msg:
            case Tick():
                self._generate()
            case Flush():
                await self._flush()
            case Assign(assignment=assignment):
                if assignment.revision > self.assignment.revision:
                    self._apply(assignment, "assign")
            case Serve(request_id=request_id, payload=payload):
                return await self._serve(request_id, payload)
            case Retire():
                self.ctx.stopping = True
                await self._flush()
                self.stop()
            case ReadHostStatus():
                a = self.assignment
                return HostStatus(self.host_name, a.revision, a.step, dict(a.control),
                                  dict(a.experiment), a.fraction,
                                  sum(b.requests for b in self.buffer.values()))
        return None

    def _apply(self, assignment: Assignment, how: str) -> None:
        self.assignment = assignment
        self.configs = {v: assignment.versions(v) for v in ("control", "experiment")}
        self.ctx.ledger.applied_revision(self.ctx.wall(), self.host_name, assignment.revision,
                                         assignment.step, how)
        self.log.info("host.assigned", revision=assignment.revision, step=assignment.step,
                      how=how)

    def _record(self, variant: str, latency: float, ok: bool) -> _Buffer:
        key = (self.assignment.step, variant)
        buf = self.buffer.get(key)
        if buf is None:
            buf = self.buffer[key] = _Buffer()
        buf.requests += 1
        if ok:
            buf.latencies.append(latency)
        else:
            buf.errors += 1
        return buf

    def _generate(self) -> None:
        now = self.now()
        count = _poisson(self.rng, self.ctx.host_rate * (now - self.last_tick))
        self.last_tick = now
        if count == 0:
            return
        model = self.ctx.model
        assert model is not None
        a = self.assignment
        served = {"control": [0, 0], "experiment": [0, 0]}
        measured: list[float] = []
        for _ in range(count):
            self.seq += 1
            request_id = f"{self.host_name}.{self.nonce:08x}.{self.seq}"
            variant = variant_for(request_id, a.experiment_id, a.fraction)
            request = Request(request_id, self.host_name, now)
            result = model(self.configs[variant], request, self.rng)
            latency, ok = self._check_result(result)
            self._record(variant, latency, ok)
            tally = served[variant]
            tally[0] += 1
            tally[1] += not ok
            if ok:
                measured.append(latency)
        wall = self.ctx.wall()
        for variant, (n, errors) in served.items():
            self.ctx.ledger.served(a.step, variant, self.configs[variant], n, errors, wall)
        self.ctx.ledger.measured(measured)

    def _check_result(self, result: object) -> tuple[float, bool]:
        if (isinstance(result, tuple) and len(result) == 2
                and isinstance(result[0], int | float) and result[0] >= 0):
            return float(result[0]), bool(result[1])
        raise DeploymentError(f"host {self.host_name!r}: the service model returned {result!r}; "
                              "expected (latency_seconds >= 0, ok)")

    async def _serve(self, request_id: str, payload: bytes) -> Served:
        handler = self.ctx.handler
        if handler is None:
            raise DeploymentError(f"host {self.host_name!r} has no application handler for Serve")
        a = self.assignment
        variant = variant_for(request_id, a.experiment_id, a.fraction)
        configs = self.configs[variant]
        started = self.now()
        result: object = None
        error = ""
        try:
            result = await handler(configs, Request(request_id, self.host_name, started, payload))
        except Exception as exc:  # the application's failure is an outcome, not our crash
            error = f"{type(exc).__name__}: {exc}"
        latency = self.now() - started
        self._record(variant, latency, not error)
        self.ctx.ledger.served(a.step, variant, configs, 1, int(bool(error)), self.ctx.wall())
        if not error:
            self.ctx.ledger.measured((latency,))
        return Served(request_id, variant, dict(configs), latency, not error, result, error)

    async def _flush(self) -> None:
        """Publish buffered outcomes (plus a heartbeat for the current step)."""
        ctx = self.ctx
        now = self.now()
        upto = ctx.wall()
        fault = ctx.rt.faults.fire("stop_reporting", self.host_name)
        if fault is not None:  # a broken metrics agent: silent for the fault's duration
            until = now + fault.duration if fault.duration > 0 else math.inf
            host = self.host_name
            ctx.silent_until[host] = max(until, ctx.silent_until.get(host, until))
            ctx.ledger.note(upto, "stop_reporting", host)
        silent = ctx.silent_until.get(self.host_name, float("-inf"))
        buffered = self._take_buffer(upto)
        if now < silent:
            ctx.ledger.lost(sum(v.requests for r in buffered for v in r.variants.values()),
                            silenced_report=True)
            return
        self.pending.extend(buffered)
        if not self.pending:
            return
        try:
            await ctx.metrics.publish(self.pending)
        except Exception as exc:  # outage: keep the outcomes and retry next time
            self.log.warning("host.report_failed", error=str(exc), reports=len(self.pending))
            return
        self.pending = []

    def _take_buffer(self, upto: float) -> list[MetricsReport]:
        a = self.assignment
        by_step: dict[str, dict[str, VariantOutcomes]] = {a.step: {}}
        for (step, variant), buf in self.buffer.items():
            by_step.setdefault(step, {})[variant] = VariantOutcomes(
                buf.requests, buf.errors, buf.latencies)
        self.buffer = {}
        return [MetricsReport(self.host_name, step, a.revision, upto, variants)
                for step, variants in by_step.items()]
