"""The pre-change package, for side-by-side numbers: ``sync/`` as a commit left it, driven by today's bench.

``git archive`` writes that commit's ``sync/`` into a temporary directory, and a child
interpreter puts it ahead of this checkout on ``sys.path``: the bench code (``bench/``) and the
stand-ins are today's, the package under test is the old one. Nothing in the working tree
changes, and no git worktree is registered. Each measurement is one child process, so the
bench interleaves old and new round by round and machine load hits both alike.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The commit issue 25 measured against (bench/README.md, 2026-11-28).
DEFAULT_COMMIT = "c3d2d2c"

# argv: old tree, this checkout, JSON arguments. Prints one JSON line last.
_CHILD = """
import json, logging, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
logging.basicConfig(level=logging.CRITICAL)
import sync
assert sync.__file__.startswith(sys.argv[1]), sync.__file__
from bench.baseline import alias_flat_layout
alias_flat_layout(sys.argv[1], sys.argv[2])
args = json.loads(sys.argv[3])
if args["part"] == "run":
    from bench import runs
    from bench.pg import fresh_database
    from standins import bigquery as sbq
    from sync.run.publisher import PubSubPublisher
    publisher = PubSubPublisher(args["topic"]) if args.get("topic") else None
    with fresh_database() as url:
        env = {**args["env"], "DATABASE_URL": url}
        result = runs.one_run(sbq.client(args["endpoint"]), env, publisher=publisher)
else:
    import gc
    from bench import write_path
    from bench.data import make_rows
    rows = make_rows(args["rows"])
    # The bench's input, which an invocation never holds (it holds one page): frozen out of
    # collections, as sync/run/runtime.py freezes what a deployed process holds for good.
    gc.collect()
    gc.freeze()
    result = write_path.run_ours(rows, args["page_sizes"])
print(json.dumps(result, default=str))
"""


def alias_flat_layout(old_tree: str, checkout: str) -> None:
    """Let today's bench import ``sync.<package>.<module>`` from a tree that predates the packages.

    Commits before the layout by job kept every module at ``sync/<module>.py``; each one that
    today lives at ``sync/<package>/<module>.py`` is registered under its new name too.
    """
    import importlib
    import types

    old = Path(old_tree) / "sync"
    if (old / "core").is_dir():
        return  # the tree already has the packages
    for path in sorted((Path(checkout) / "sync").glob("*/*.py")):
        package, module = path.parent.name, path.stem
        if module == "__init__" or not (old / f"{module}.py").is_file():
            continue
        parent = sys.modules.setdefault(f"sync.{package}", types.ModuleType(f"sync.{package}"))
        loaded = importlib.import_module(f"sync.{module}")
        sys.modules[f"sync.{package}.{module}"] = loaded
        setattr(parent, module, loaded)


def export(commit: str) -> Path:
    """``sync/`` of ``commit`` in a new temporary directory (left for the OS to clean)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "sync"], check=True, capture_output=True
    ).stdout
    tree = Path(tempfile.mkdtemp(prefix=f"bench-baseline-{commit}-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def child(tree: Path, args: dict[str, Any]) -> dict[str, Any]:
    """One measurement by the package in ``tree``, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(ROOT), json.dumps(args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    if out.returncode != 0:
        msg = f"baseline child failed ({out.returncode}): {out.stderr[-2000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
