"""Store key layout of a deployment (one namespace per deployment id)."""

from __future__ import annotations


def state_key(deployment: str) -> str:
    """The controller's :class:`DeploymentState`, replaced by compare-and-set."""
    return f"deploy/{deployment}/state"


def host_key(deployment: str, host: str) -> str:
    """The :class:`Assignment` a host must run; read by the host when it (re)starts."""
    return f"deploy/{deployment}/host/{host}"


def metrics_log(deployment: str, step: str) -> str:
    """The log of host reports for one step."""
    return f"deploy/{deployment}/metrics/{step}"


def generation_key(name: str) -> str:
    """How many deployments a scenario named ``name`` has started in this store."""
    return f"deploy/{name}/generation"


def recipe_key(deployment: str) -> str:
    """What a controller entity on any node builds itself from (``DeploymentRecipe``)."""
    return f"deploy/{deployment}/recipe"


def ledger_log(deployment: str) -> str:
    """What hosts on cluster nodes served and applied (``_ledger_log``), for the checks."""
    return f"deploy/{deployment}/ledger"
