"""Bad ``[queue]`` scenario files: exit 2, and a message naming the file, the field path
and what was expected, from both ``shardline validate`` and ``shardline run``.

Also what a bad user function does at run time: one that raises on every
message makes every message poison (dead-lettered, counted out), one that
returns the wrong shape likewise; neither takes the run down.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import main
from tests.queue_helpers import assert_all_held, quiet_logs, run_doc, scenario_doc
from tests.queue_helpers import user as user_code
from tests.scenario_helpers import assert_bad_file_refused

GOOD = """
[scenario]
name = "errors"
store = "memory://"

[queue]
servers = 2
source = { records = 50, keys = 5 }

[[queue.tiers]]
name = "transform"
kind = "map"

[[queue.tiers]]
name = "summarize"
kind = "reduce"
window = 5
"""


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()  # tests/conftest.py puts the configuration back


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def _fn(tier_kind: str, spec: str) -> str:
    return _replace(f'kind = "{tier_kind}"', f'kind = "{tier_kind}"\nfn = "{spec}"')


# name -> (file text, field path in the message, words saying what was expected)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "tier-window-wrong-type": (_replace("window = 5", 'window = "5"'), "queue.tiers[1].window",
                               ["Expected `int`", "got `str`"]),
    "tier-window-zero": (_replace("window = 5", "window = 0"), "queue.tiers[1].window",
                         ["reduce tier needs window >= 1", "got 0"]),
    "map-with-window": (_replace('kind = "map"', 'kind = "map"\nwindow = 3'),
                        "queue.tiers[0].window", ["a map tier takes no window"]),
    "tier-unknown-field": (_replace("window = 5", "windw = 5"), "queue.tiers[1]",
                           ["unknown field", "windw"]),
    "tier-unknown-kind": (_replace('kind = "map"', 'kind = "mop"'), "queue.tiers[0].kind",
                          ["Invalid enum value 'mop'"]),
    "tier-clients-zero": (_replace('kind = "map"', 'kind = "map"\nclients = 0'),
                          "queue.tiers[0].clients", ["Expected `int` >= 1"]),
    "tier-named-final": (_replace('name = "transform"', 'name = "final"'),
                         "queue.tiers[0].name", ["not 'final'"]),
    "duplicate-tier-name": (_replace('name = "summarize"', 'name = "transform"'),
                            "queue.tiers[1].name", ["duplicate tier name 'transform'"]),
    "out-keys-with-fn": (_replace('kind = "map"', 'kind = "map"\nout_keys = 3\n'
                                  'fn = "tests.queue_helpers.user:transform"'),
                         "queue.tiers[0].out_keys", ["custom fn chooses its own output keys"]),
    "no-tiers": (GOOD.split("[[queue.tiers]]")[0] + "tiers = []\n", "queue.tiers",
                 ["at least one [[queue.tiers]]"]),
    "servers-zero": (_replace("servers = 2", "servers = 0"), "queue.servers",
                     ["Expected `int` >= 1"]),
    "bad-duration": (_replace("servers = 2", 'servers = 2\nvisibility_timeout = "3x"'),
                     "queue.visibility_timeout", ["expected a duration", "'3x'"]),
    "dedup-not-longer-than-visibility": (
        _replace("servers = 2", 'servers = 2\nvisibility_timeout = "30s"\ndedup_window = "30s"'),
        "queue.dedup_window", ["more than visibility_timeout (30 s)", "got 30 s"]),
    "checkpoint-every-zero": (_replace("servers = 2", "servers = 2\ncheckpoint_every = 0"),
                              "queue.checkpoint_every", ["Expected `int` >= 1"]),
    "bad-lineage": (_replace("servers = 2", 'servers = 2\nlineage = "some"'), "queue.lineage",
                    ["Invalid enum value 'some'"]),
    "no-source": (_replace("source = { records = 50, keys = 5 }\n", ""), "queue.source",
                  ["expected a table like { records", "'pkg.mod:fn'"]),
    "source-unknown-field": (_replace("keys = 5", "kees = 5"), "queue.source",
                             ["unknown field", "kees"]),
    "source-hot-share": (_replace("keys = 5", "keys = 5, hot_share = 1.5"),
                         "queue.source.hot_share", ["Expected `float` < 1.0"]),
    "poison-unknown-tier": (_replace("servers = 2", 'servers = 2\npoison = { tier = "nope" }'),
                            "queue.poison.tier", ["no tier named 'nope'", "transform, summarize"]),
    "hot-key-bound-without-hot-key": (GOOD + '[expect]\nmax_other_keys_p99 = "1s"\n',
                                      "queue.source", ["needs a generated source",
                                                       "hot_share > 0"]),
    "expect-unknown-field": (GOOD + "[expect]\nmin_dead_leters = 1\n", "expect",
                             ["unknown field", "min_dead_leters"]),
    "unknown-fault-kind": (GOOD + '[[faults]]\nkind = "explode"\nevery = "1s"\n',
                           "faults[0].kind", ["unknown fault kind 'explode'", "store_error"]),
    "fn-module-missing": (_fn("map", "no.such:fn"), "queue.tiers[0].fn",
                          ["'no.such:fn'", "cannot import module 'no.such'"]),
    "fn-attribute-missing": (_fn("reduce", "tests.queue_helpers.user:nope"),
                             "queue.tiers[1].fn",
                             ["'tests.queue_helpers.user:nope'", "has no attribute 'nope'"]),
    "fn-not-callable": (_fn("map", "tests.queue_helpers.user:not_a_function"),
                        "queue.tiers[0].fn", ["is not callable"]),
    "fn-without-colon": (_fn("map", "json.loads"), "queue.tiers[0].fn",
                         ["'package.module:function'"]),
    "source-function-missing": (_replace("{ records = 50, keys = 5 }",
                                         '"tests.queue_helpers.user:nope"'),
                                "queue.source", ["has no attribute 'nope'"]),
    "final-function-missing": (_replace("servers = 2", 'servers = 2\nfinal = "no.such:finish"'),
                               "queue.final", ["'no.such:finish'", "cannot import module"]),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_queue_file_exits_2_naming_file_field_and_expectation(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, field, expected = CASES[case]
    assert_bad_file_refused(command, _write(tmp_path, text), field, expected,
                            tmp_path / "out", capsys)


def test_the_good_file_is_valid_and_runs(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the cases above: each differs from a file that validates and runs."""
    path = _write(tmp_path, GOOD)
    assert main(["validate", str(path)]) == 0
    assert "valid queue scenario 'errors'" in capsys.readouterr().out
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["result"]["keys"] == 5


def test_a_function_that_raises_on_every_message_dead_letters_them_all(tmp_path: Path) -> None:
    """Every message is poison: each is tried ``max_receives`` times, dead-lettered and
    counted out; the run finishes, the ledger still balances and the result is empty."""
    user_code.reset()
    doc = scenario_doc(
        source="tests.queue_helpers.user:originals", max_receives=3, lineage="full",
        tiers=[{"name": "transform", "kind": "map", "fn": "tests.queue_helpers.user:always_fails"},
               {"name": "summarize", "kind": "reduce", "window": 5,
                "fn": "tests.queue_helpers.user:summarize"}],
        final="tests.queue_helpers.user:finish")
    report = run_doc(doc, tmp_path)
    found = assert_all_held(report, ("strict_order", "exactly_once_contribution",
                                     "dead_letters"))
    assert "result_matches_oracle" not in found  # user functions: no built-in oracle
    originals = user_code.ORIGINALS
    assert report.metrics["dead_lettered"] == originals
    assert len(user_code.CALLS) == 3 * originals
    assert report.metrics["processing_errors"] == 3 * originals
    dead = report.extra["dead_letters"]
    assert isinstance(dead, list) and len(dead) == originals
    assert all("ValueError: cannot transform" in d["reason"] and d["counted_out"] for d in dead)
    assert report.extra["ledger"]["final"]["count"] == 0  # type: ignore[index]
    assert report.extra["ledger"]["dead_letters_counted_out"]["count"] == originals  # type: ignore[index]
    assert report.extra["result"] == {"count": 0, "sum": 0}


def test_a_function_failing_on_some_messages_dead_letters_only_those(tmp_path: Path) -> None:
    seed = 4
    doc = scenario_doc(
        seed=seed, source="tests.queue_helpers.user:originals", max_receives=2,
        tiers=[{"name": "transform", "kind": "map",
                "fn": "tests.queue_helpers.user:fails_on_seven"},
               {"name": "aggregate", "kind": "reduce", "window": 7,
                "fn": "tests.queue_helpers.user:aggregate"}],
        final="tests.queue_helpers.user:finish")
    report = run_doc(doc, tmp_path)
    assert_all_held(report, ("strict_order", "exactly_once_contribution", "dead_letters"))
    values = [json.loads(b)["v"] for _, b in user_code.originals(seed)]
    kept = [v for v in values if v % 10 != 7]
    assert report.metrics["dead_lettered"] == len(values) - len(kept) > 0
    assert report.extra["result"] == {"count": len(kept), "sum": sum(kept)}


def test_a_function_returning_the_wrong_shape_is_a_processing_failure(tmp_path: Path) -> None:
    doc = scenario_doc(
        source="tests.queue_helpers.user:originals", max_receives=1,
        tiers=[{"name": "transform", "kind": "map", "fn": "tests.queue_helpers.user:wrong_shape"}],
        final="tests.queue_helpers.user:finish")
    report = run_doc(doc, tmp_path)
    assert_all_held(report, ("strict_order", "exactly_once_contribution", "dead_letters"))
    dead = report.extra["dead_letters"]
    assert isinstance(dead, list) and len(dead) == user_code.ORIGINALS
    assert "expected (order_key: str, body: bytes)" in dead[0]["reason"]
