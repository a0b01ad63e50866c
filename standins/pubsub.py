"""The official Pub/Sub emulator (Debian package google-cloud-cli-pubsub-emulator), when present."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from standins.process import free_port, stop

_CANDIDATES = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
)


def emulator_binary() -> str | None:
    for path in _CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("cloud-pubsub-emulator")


@dataclass
class PubSubEmulator:
    host: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.process)


def start(log_dir: Path) -> PubSubEmulator:
    binary = emulator_binary()
    if binary is None:
        msg = "the Pub/Sub emulator is not installed (Debian package google-cloud-cli-pubsub-emulator)"
        raise RuntimeError(msg)
    port = free_port()
    log = open(log_dir / f"pubsub-{port}.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([binary, "--host=127.0.0.1", f"--port={port}"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"Pub/Sub emulator exited with {proc.returncode}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return PubSubEmulator(f"127.0.0.1:{port}", proc)
        except OSError:
            time.sleep(0.3)
    proc.kill()
    msg = "Pub/Sub emulator did not start within 60 s"
    raise RuntimeError(msg)
