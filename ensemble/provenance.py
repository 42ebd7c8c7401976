"""What produced a run: the resolved config and the versions of everything that shaped its numbers."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "torchvision", "timm", "snakemake", "scikit-learn", "numpy", "pandas", "pillow")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(directory: Path) -> str | None:
    """The commit checked out in ``directory`` (with ``+dirty`` for local changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def versions(directory: Path) -> dict:
    """Python, the key packages, this package and the git commit of ``directory``."""
    from ensemble import __version__

    return {"python": platform.python_version(), "platform": platform.platform(), "ensemble": __version__,
            "git_commit": git_commit(directory), **{p: _version(p) for p in PACKAGES}}
