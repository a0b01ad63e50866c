"""Runs one real invocation in a child process and kills it (``os._exit``) right after a step.

Usage: python tests/crash_runner.py STEP MESSAGE_JSON
Settings come from the environment, as in production.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync.core.config import Settings
from sync.core.messages import decode
from sync.run.pipeline import Checkpoint, Pipeline
from sync.run.runtime import Runtime

KILLED_EXIT_CODE = 86


def main() -> None:
    step, body = sys.argv[1], sys.argv[2].encode()
    runtime = Runtime(Settings.from_env(os.environ))

    def checkpoint(reached: Checkpoint) -> None:
        if reached == step:
            os._exit(KILLED_EXIT_CODE)  # no cleanup, no finally: like SIGKILL or a timeout

    class NullPublisher:
        def publish(self, message: object) -> None:
            pass

    pipeline = Pipeline(runtime.settings, runtime.source(), runtime.connect, NullPublisher(), checkpoint)
    pipeline.handle(decode(body, "crash-runner"))


if __name__ == "__main__":
    main()
