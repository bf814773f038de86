"""Debian packages that some tests need, installed by the tests themselves on a fresh machine.

`ensure(command, package)` finds a program on PATH or in the sbin directories, and when it is missing and this
process is root with apt-get at hand, installs the package (updating the package lists once if the first try
fails: a fresh machine may have none). It returns the program's path, or the reason it cannot be had, for the
caller to skip with; `required(found)` does that for a fixture: the path, or the test skipped (failed when root,
for then the suite installs the package itself and not having it is a failure).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

INSTALL_SECONDS = 900.0
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find(commands: Sequence[str]) -> Path | None:
    """The first of *commands* on PATH or in the sbin directories (which an ordinary PATH often lacks)."""
    for command in commands:
        found = shutil.which(command)
        if found:
            return Path(found)
        for directory in SBIN_DIRS:
            candidate = Path(directory) / command
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def ensure(
    command: str | Sequence[str], package: str, *, prepare: Callable[[dict[str, str]], None] | None = None
) -> Path | str:
    """*command*'s path (or the first found of several names), installing Debian's *package* first when it is
    missing and we are root; otherwise the reason the tests that need it cannot run. *prepare* runs before the
    install with its environment (e.g. to preseed debconf)."""
    commands = [command] if isinstance(command, str) else list(command)
    found = find(commands)
    if found is not None:
        return found
    if os.geteuid() != 0:
        return f"{commands[0]} is not installed and the tests are not run as root: apt-get install {package} (Debian)"
    if shutil.which("apt-get") is None:
        return f"{commands[0]} is not installed and there is no apt-get to install {package} with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if prepare is not None:
        prepare(env)
    install = ["apt-get", "install", "-y", "--no-install-recommends", "-o", "Dpkg::Use-Pty=0", package]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=INSTALL_SECONDS, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
    found = find(commands)
    return found if found is not None else f"installing {package} failed: {done.stderr.strip()[-500:]}"


def required(found: Path | str) -> Path:
    """*found*, an ensure()-style result, as a path; or the test skipped with its reason (failed when root)."""
    if isinstance(found, str):
        if os.geteuid() == 0:
            pytest.fail(found)
        pytest.skip(found)
    return found
