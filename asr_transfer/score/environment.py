"""What produced a result: package versions, GPU, git commit, config hash and command."""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("asr-transfer", "torch", "torchaudio", "espnet", "jiwer", "numpy", "sentencepiece")


def environment() -> dict[str, str]:
    """Versions and machine facts of this run; absent things read "none" or "unknown".

    Example:
        >>> sorted(environment())[:3]
        ['asr-transfer', 'espnet', 'git commit']
    """
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "not installed"
    # nvidia-smi rather than torch.cuda: the report should not pay for importing torch
    env["gpu"] = _output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) or "none"
    env["git commit"] = _output(["git", "rev-parse", "HEAD"]) or "unknown"
    return env


def system_facts(path: Path) -> dict[str, str]:
    """Config hash (sha256 of config.yaml, 12 hex digits) and command of one experiment dir."""
    config, command = path / "config.yaml", path / "command.txt"
    return {
        "config sha256": hashlib.sha256(config.read_bytes()).hexdigest()[:12]
        if config.is_file()
        else "no config.yaml",
        "command": command.read_text(encoding="utf-8", errors="replace").strip()
        if command.is_file()
        else "unknown",
    }


def _output(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""
