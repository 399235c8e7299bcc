"""Node faults in a scenario: their kinds, the nodes' names, and the check that each
fault strikes a node the run has.

Which nodes a run has is known when the file names ``[scenario] nodes = N``
(the loader checks then), or only at run time (``shardline run --nodes N``:
the runner checks then; ``--join``: the live nodes of the cluster, checked
by ``runtime.scenario._join``). A ``partition`` targets groups of names or
globs, ``"node-1|node-2,node-3"``; ``kill_node`` and ``pause_node`` one name
or glob. Both the loader and the node runs read this module; it reads
neither.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from runtime._errors import ScenarioError
from runtime._faults import Fault

NODE_FAULT_KINDS = ("kill_node", "pause_node", "partition")


def node_names(count: int) -> list[str]:
    """The names of a run's ``count`` nodes: ``node-1`` ... ``node-<count>``."""
    return [f"node-{i}" for i in range(1, count + 1)]


def target_globs(fault: Fault) -> list[str]:
    """Every name or glob a node fault names (each group's members, for a partition)."""
    if fault.kind == "partition":
        return fault.target.replace("|", ",").split(",")
    return [fault.target]


def shown(names: Sequence[str], limit: int = 8) -> str:
    """``names`` for an error message: the first ``limit``, then how many in all."""
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_node_faults(file: str, faults: Sequence[Fault], nodes: int | None,
                      clock: str, *, require_nodes: bool = True) -> None:
    """Node faults need nodes and a target among them (``ScenarioError`` naming the
    fault's field otherwise); with ``nodes`` unknown (``None``) and not
    ``require_nodes``, targets are not checked."""
    for index, fault in enumerate(faults):
        if fault.kind not in NODE_FAULT_KINDS:
            continue
        if nodes is None:
            if not require_nodes:
                continue
            raise ScenarioError(
                f"{file}: faults[{index}].kind: a {fault.kind!r} fault needs nodes: "
                "set [scenario] nodes = N or run with --nodes N")
        names = node_names(nodes)
        for target in target_globs(fault):
            if not any(fnmatch.fnmatchcase(name, target) for name in names):
                raise ScenarioError(
                    f"{file}: faults[{index}].target: {target!r} matches no node; expected "
                    f"a name or glob matching one of: {shown(names)}")
