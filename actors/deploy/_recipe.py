"""What a node builds a deployment's entities from: the stored recipe, a node-local context.

An entity is handed no Python object, so the driver writes a
:class:`DeploymentRecipe` under ``keys.recipe_key(deployment)`` before it
sends the first message; the controller and host entities of that
deployment on any node read it in ``recover`` and share one
:class:`DeploymentContext` per node (:func:`node_context`), whose ledger is
a :class:`LedgerJournal` the hosts write to the store for the driver.
The service model travels as data: the ``[deploy.model]`` table, or the
``"module:function"`` / ``"path.py:function"`` name each node resolves.
"""

from __future__ import annotations

import weakref

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._context import DeploymentContext, DeploymentError
from actors.deploy._ledger_log import LedgerJournal
from actors.deploy._model import LatencyModel, ServiceModel
from actors.deploy._spec import DeploymentSpec
from runtime import Runtime
from runtime._callables import resolve_callable
from runtime._durations import seconds_dec_hook, seconds_enc_hook


class DeploymentRecipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A deployment as any node can rebuild it: the spec, the name its actors carry, the
    service model and the traffic the hosts generate."""

    spec: DeploymentSpec
    name: str
    model: LatencyModel | str | None = None
    request_rate: float = 0.0
    tick: float = 0.5


encode_recipe = msgspec.msgpack.Encoder(enc_hook=seconds_enc_hook).encode
_decode_recipe = msgspec.msgpack.Decoder(DeploymentRecipe, dec_hook=seconds_dec_hook).decode
_contexts: weakref.WeakKeyDictionary[Runtime, dict[str, DeploymentContext]] = \
    weakref.WeakKeyDictionary()
_names: weakref.WeakKeyDictionary[Runtime, dict[str, str]] = weakref.WeakKeyDictionary()


def actor_prefix(rt: Runtime, deployment: str) -> str | None:
    """The name ``deployment``'s actors carry in one process (``<name>.controller``), once
    this node built its context (``node_context``)."""
    return _names.get(rt, {}).get(deployment)


async def node_context(rt: Runtime, deployment: str) -> DeploymentContext:
    """This node's context for ``deployment``, built from its recipe on first use;
    ``DeploymentError`` when the store has no recipe for it."""
    found = _contexts.setdefault(rt, {})
    context = found.get(deployment)
    if context is not None:
        return context
    stored = await rt.store.get(keys.recipe_key(deployment))
    if stored is None:
        raise DeploymentError(f"deployment {deployment!r}: no recipe in the store; "
                              "the driver writes it before the first message")
    recipe = _decode_recipe(stored.value)
    model: ServiceModel | None = None
    if isinstance(recipe.model, LatencyModel):
        model = recipe.model
    elif isinstance(recipe.model, str):
        model = resolve_callable(recipe.model, what="service model")  # type: ignore[assignment]
    context = found.get(deployment)  # another activation built it meanwhile
    if context is None:
        _names.setdefault(rt, {})[deployment] = recipe.name
        context = found[deployment] = DeploymentContext(
            rt, recipe.spec, model=model, request_rate=recipe.request_rate, tick=recipe.tick,
            metrics_name=f"{recipe.name}.metrics", ledger=LedgerJournal())
    return context
