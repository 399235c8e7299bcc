"""The plan of a deployment: its steps and the host assignments each step needs.

For each configuration, in order: an experiment, then its promotion waves.
The plan is a pure function of the spec, so the durable state only names
the step index; a restarted controller rebuilds the same plan.

Wave order: hosts sorted by a stable hash of (deployment id, host name), so
the first host is not always host 0 but is the same on every replay.
"""

from __future__ import annotations

from hashlib import blake2b

import msgspec

from actors.deploy._records import Assignment, StageKind
from actors.deploy._spec import ConfigChange, DeploymentSpec, wave_sizes


class Step(msgspec.Struct, frozen=True):
    """One stage of the plan. ``promoted`` is the wave's cumulative host count."""

    index: int
    kind: StageKind
    config: int
    change: ConfigChange
    promoted: int = 0
    experiment_step: int = 0
    last_wave: bool = False

    @property
    def tag(self) -> str:
        return step_tag(self.index)


def step_tag(index: int) -> str:
    """The name outcomes of plan step ``index`` are reported under."""
    return f"s{index}"


def build_plan(spec: DeploymentSpec) -> list[Step]:
    steps: list[Step] = []
    sizes = wave_sizes(spec.analysis.waves, len(spec.hosts))
    for c, change in enumerate(spec.configs):
        experiment = len(steps)
        steps.append(Step(experiment, "experiment", c, change, experiment_step=experiment))
        for w, size in enumerate(sizes):
            steps.append(Step(len(steps), "wave", c, change, size, experiment,
                              last_wave=w == len(sizes) - 1))
    return steps


def host_order(deployment: str, hosts: list[str]) -> list[str]:
    """The order hosts are promoted in: stable per deployment, spread over the fleet."""
    def key(host: str) -> bytes:
        return blake2b(f"{deployment}\x00{host}".encode(), digest_size=8).digest()

    return sorted(hosts, key=key)


def step_targets(spec: DeploymentSpec, step: Step, approved: dict[str, str],
                 order: list[str], revision: int) -> dict[str, Assignment]:
    """Every host's assignment for ``step`` (hosts outside a wave keep the control)."""
    change = step.change
    experiment = {change.name: change.experimental}
    if step.kind == "experiment":
        experiment_id = f"{spec.deployment}/{step.tag}"
        one = Assignment(revision, step.tag, dict(approved), experiment,
                         spec.analysis.fraction, experiment_id)
        return {host: one for host in spec.hosts}
    promoted = set(order[:step.promoted])
    on = Assignment(revision, step.tag, dict(approved), experiment, 1.0, "")
    off = Assignment(revision, step.tag, dict(approved))
    return {host: on if host in promoted else off for host in spec.hosts}


def control_targets(spec: DeploymentSpec, approved: dict[str, str], revision: int,
                    tag: str) -> dict[str, Assignment]:
    """Every host on the approved versions only (a rollback, or the final state)."""
    one = Assignment(revision, tag, dict(approved))
    return {host: one for host in spec.hosts}
