"""``shardline run --fresh``: delete a run's store and output directory before it starts.

Deleting is guarded, because ``--out`` is a path the user typed: an output
directory is removed only if a ``shardline run`` wrote it (it holds the
``events.jsonl`` every run appends to) and it is neither the working
directory, one of its parents, nor the home directory. A sqlite store is
removed with its ``-wal`` and ``-shm`` files, a postgresql store's schema is
dropped (only if it holds a Shardline store); ``memory://`` has nothing to
delete.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from runtime._errors import ScenarioError, StoreError
from runtime.store._url import drop_store, store_location

RUN_MARKER = "events.jsonl"
"""Every ``shardline run`` appends its events here, so its presence marks a run's output."""


def _check_deletable(out_dir: Path) -> None:
    resolved = out_dir.resolve()
    protected = {Path.home().resolve(), *Path.cwd().resolve().parents, Path.cwd().resolve()}
    if resolved in protected:
        raise ScenarioError(f"refusing to delete {out_dir}: it is the working directory, "
                            "one of its parents or the home directory; pass another --out")
    if any(resolved.iterdir()) and not (resolved / RUN_MARKER).exists():
        raise ScenarioError(f"refusing to delete {out_dir}: it has no {RUN_MARKER}, so "
                            "shardline run did not write it; pass another --out")


def clear_run(out_dir: Path, store_url: str) -> list[str]:
    """Delete the run's store and output directory; return what was deleted.

    ``ScenarioError`` (nothing deleted) if the output directory does not look
    like a run's, or the store URL is malformed.
    """
    try:
        where = store_location(store_url)
    except StoreError as exc:
        raise ScenarioError(str(exc)) from None
    if out_dir.is_dir():
        _check_deletable(out_dir)
    removed: list[str] = []
    if isinstance(where, Path):
        for path in (where, *(where.with_name(where.name + s) for s in
                              ("-wal", "-shm", "-journal"))):
            if path.exists():
                path.unlink()
                if path == where:
                    removed.append(f"store {path}")
    else:
        try:
            dropped = asyncio.run(drop_store(where))
        except StoreError as exc:
            raise ScenarioError(str(exc)) from None
        if dropped is not None:
            removed.append(dropped)
    if out_dir.is_dir():
        shutil.rmtree(out_dir)
        removed.append(f"output {out_dir}")
    return removed
