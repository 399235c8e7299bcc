"""The deployment controller: runs the plan, judges each step, rolls back.

Its whole state is one :class:`DeploymentState` record, replaced by
compare-and-set at every transition, and every transition that decides
something writes the decision *and* the next pending step in that one
write. So a crash anywhere leaves the store in one of two shapes:

- ``applying``: a pending step (assignments of one revision) that may have
  reached some hosts. ``recover`` replays it: every host record is written
  again and every host told again (hosts ignore revisions they have), then
  the step proceeds. It is neither restarted (no new revision, no new
  decision) nor skipped.
- ``baking``: the bake deadline and the next look are in the record, so the
  bake continues where it was; the samples are in the metrics backend, so
  nothing collected is lost. A look whose decision was not yet written
  happens again, on at least the same data.

The clock for deadlines is the store clock (``rt.clock.wall()``), so they
mean the same thing after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._analysis import Judgement, judge
from actors.deploy._context import DeploymentContext
from actors.deploy._host import Assign
from actors.deploy._metrics import MetricsUnavailable
from actors.deploy._plan import build_plan, control_targets, host_order, step_tag, step_targets
from actors.deploy._records import DeploymentState, Evidence, StageResult, Verdict
from actors.deploy._spec import wave_sizes
from runtime import Actor, Message, NoSuchActor
from runtime.store import Fence, Put

_decode_state = msgspec.msgpack.Decoder(DeploymentState).decode
_encode = msgspec.msgpack.Encoder().encode
_EPS = 1e-9


class Advance(Message, frozen=True):
    """Carry out the pending step of the stored state."""

    chain: int


class Check(Message, frozen=True):
    """Look at the baking step's data (stale chains are ignored)."""

    chain: int


class ReadDeployment(Message, frozen=True):
    """Answered with the current :class:`DeploymentState`."""


ControllerMsg = Advance | Check | ReadDeployment


class DeploymentController(Actor[ControllerMsg]):
    """Drives one deployment (``context.spec``) from the store; one per deployment."""

    def __init__(self, context: DeploymentContext) -> None:
        self.ctx = context
        self.spec = context.spec
        self.plan = build_plan(context.spec)
        waves = len(wave_sizes(self.spec.analysis.waves, len(self.spec.hosts)))
        self.alpha = self.spec.analysis.look_alpha(waves)
        self.key = keys.state_key(context.spec.deployment)
        self.chain = 0

    async def started(self) -> None:
        self.ctx.ledger.started(self.ctx.wall(), self.name)

    async def recover(self) -> None:
        stored = await self.runtime.store.get(self.key)
        if stored is None:
            await self._create()
        else:
            self.state = _decode_state(stored.value)
            self.version = stored.version
            self.ctx.controller_recoveries += 1
            if self.state.phase == "applying":
                self.log.info("deploy.replay_pending", step=self.state.step,
                              action=self.state.action, revision=self.state.revision)
                await self._save(msgspec.structs.replace(
                    self.state, replays=self.state.replays + 1))
        self._continue()

    async def receive(self, msg: ControllerMsg) -> object:
        match msg:
            case Advance(chain=chain) if chain == self.chain:
                if self.state.phase == "applying":
                    await self._apply_pending()
            case Check(chain=chain) if chain == self.chain:
                if self.state.phase == "baking":
                    await self._check()
            case ReadDeployment():
                return self.state
        return None

    # -- durable transitions ------------------------------------------------
    async def _create(self) -> None:
        spec = self.spec
        now = self.ctx.wall()
        order = host_order(spec.deployment, spec.hosts)
        approved = self.ctx.initial_controls()
        first = self.plan[0]
        self.version = 0
        await self._save(DeploymentState(
            spec.deployment, list(spec.hosts), order, now, 0, "applying", "step", 1,
            step_targets(spec, first, approved, order, 1), approved, step_started_at=now))

    async def _save(self, new: DeploymentState) -> None:
        """Compare-and-set the state; a conflict crashes us and recover re-reads."""
        result = await self.runtime.store.write(
            [Put(self.key, _encode(new), expect_version=self.version)], fence=self._fence())
        self.version = result.versions[self.key]
        self.state = new

    def _continue(self) -> None:
        """Schedule what the stored phase needs next (a new chain voids older timers)."""
        self.chain += 1
        st = self.state
        if st.phase == "applying":
            self.send_after(0.0, Advance(self.chain))
        elif st.phase == "baking":
            self.send_after(max(0.0, st.next_check - self.ctx.wall()), Check(self.chain))
        else:
            self.ctx.finished.set()

    def _tell_host(self, host: str, msg: Assign) -> None:
        """Tell a host its new assignment; a host not running reads its record on start."""
        with contextlib.suppress(NoSuchActor):
            self.runtime.lookup(host).tell_nowait(msg)

    def _fence(self) -> Fence | None:
        """The fence the state is written under (the entity's lease across nodes)."""
        return None

    # -- applying a pending step ------------------------------------------------
    async def _apply_pending(self) -> None:
        st = self.state
        store = self.runtime.store
        for index, host in enumerate(st.hosts):
            assignment = st.targets[host]
            await store.write([Put(keys.host_key(st.deployment, host), _encode(assignment))])
            self._tell_host(host, Assign(assignment))
            await self.fault_point(f"after assigning revision {st.revision} to {host}")
            if self.spec.apply_interval > 0 and index < len(st.hosts) - 1:
                await asyncio.sleep(self.spec.apply_interval)
        await self._applied()

    async def _applied(self) -> None:
        st = self.state
        now = self.ctx.wall()
        policy = self.spec.analysis
        if st.action == "step":
            bake = policy.bake_for(self.plan[st.step].kind)
            new = msgspec.structs.replace(
                st, phase="baking", bake_until=now + bake,
                next_check=now + min(policy.check_interval, bake),
                looks=0, missing_data_looks=0, extensions=0)
        else:
            results = list(st.results)
            if st.action == "rollback" and results:
                results[-1] = msgspec.structs.replace(results[-1],
                                                      rolled_back_at=now - st.created_at)
            new = msgspec.structs.replace(
                st, phase="finished", results=results,
                outcome="completed" if st.action == "finalize" else "rolled back")
        await self._save(new)
        self.runtime.trace.record(self.runtime.now(), "deploy_applied", self.name,
                                  f"revision {st.revision} {st.action}")
        self._continue()

    # -- looking and deciding ---------------------------------------------------
    async def _check(self) -> None:
        st = self.state
        now = self.ctx.wall()
        if now + _EPS < st.next_check:
            self._continue()
            return
        policy = self.spec.analysis
        final = now + _EPS >= st.bake_until
        verdict, evidence = await self._look(final, now)
        await self.fault_point(f"after look {st.looks + 1} at step {st.step}")
        st = msgspec.structs.replace(
            st, looks=st.looks + 1,
            missing_data_looks=st.missing_data_looks + (1 if evidence.missing else 0))
        if verdict in ("rejected", "approved"):
            await self._decide(st, verdict, evidence, now)
            return
        if verdict == "inconclusive":
            if policy.on_inconclusive == "extend" and st.extensions < policy.max_extensions:
                new = msgspec.structs.replace(
                    st, extensions=st.extensions + 1, bake_until=now + policy.extension,
                    next_check=now + min(policy.check_interval, policy.extension))
                self.log.warning("deploy.bake_extended", step=st.step, reason=evidence.missing)
            else:
                await self._decide(st, "inconclusive", evidence, now)
                return
        else:
            new = msgspec.structs.replace(
                st, next_check=min(now + policy.check_interval, st.bake_until))
        await self._save(new)
        self._continue()

    async def _look(self, final: bool, now: float) -> tuple[Judgement, Evidence]:
        st = self.state
        step = self.plan[st.step]
        policy = self.spec.analysis
        metrics = self.ctx.metrics
        look, at = st.looks + 1, now - st.created_at
        try:
            samples = await metrics.query(step.tag)
            experiment = samples.variant("experiment")
            if step.kind == "experiment" or step.promoted < len(st.hosts):
                control, baseline = samples.variant("control"), "concurrent"
            else:  # every host promoted: compare with the control of the approved experiment
                base = await metrics.query(step_tag(step.experiment_step))
                control = base.variant("control")
                baseline = f"control of experiment {step_tag(step.experiment_step)}"
        except MetricsUnavailable as exc:
            evidence = Evidence(look, at, final, self.alpha, 0, 0,
                                len(st.hosts), 0, 0.0, "", str(exc), str(exc), [])
            return ("inconclusive" if final else "pending"), evidence
        reporting = samples.reporting(now - policy.report_timeout) & set(st.hosts)
        return judge(control, experiment, policy, final=final, look=look, at=at,
                     hosts=len(st.hosts), hosts_reporting=len(reporting), baseline=baseline,
                     alpha=self.alpha)

    async def _decide(self, st: DeploymentState, verdict: Verdict, evidence: Evidence,
                      now: float) -> None:
        """Record the verdict and the next pending step in one compare-and-set."""
        step = self.plan[st.step]
        change = step.change
        promoted = st.order[:step.promoted] if step.kind == "wave" else list(st.hosts)
        revision = st.revision + 1
        result = StageResult(
            st.step, step.kind, change.name, change.experimental, st.approved[change.name],
            verdict, evidence, st.step_started_at - st.created_at, now - st.created_at,
            self.spec.analysis.bake_for(step.kind), st.looks, st.missing_data_looks,
            st.extensions,
            self.spec.analysis.fraction if step.kind == "experiment"
            else len(promoted) / len(st.hosts),
            promoted, st.revision)
        approved = st.approved
        index = st.step
        if verdict == "approved":
            if step.kind == "wave" and step.last_wave:
                approved = {**approved, change.name: change.experimental}
            index += 1
            if index < len(self.plan):
                action, targets = "step", step_targets(
                    self.spec, self.plan[index], approved, st.order, revision)
            else:
                action, targets = "finalize", control_targets(
                    self.spec, approved, revision, "final")
        else:
            result = msgspec.structs.replace(result, rollback_revision=revision)
            action, targets = "rollback", control_targets(
                self.spec, approved, revision, f"{step.tag}-rollback")
        self.log.info("deploy.verdict", step=step.tag, kind=step.kind, config=change.name,
                      version=change.experimental, verdict=verdict, reason=evidence.reason)
        self.runtime.trace.record(self.runtime.now(), "deploy_verdict", self.name,
                                  f"{step.tag} {step.kind} {change.name}={change.experimental}"
                                  f" {verdict}")
        await self._save(msgspec.structs.replace(
            st, step=index, phase="applying", action=action, revision=revision,
            targets=targets, approved=approved, results=[*st.results, result],
            step_started_at=now, looks=0, missing_data_looks=0, extensions=0))
        self._continue()
