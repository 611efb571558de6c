"""Quiet output: TensorFlow's native (C++/absl) log lines kept out of what a user reads.

TensorFlow writes its C++ log lines (``I0000 00:00:... cudart_stub.cc:31] Could not find cuda
drivers``, ``WARNING: All log messages before absl::InitializeLog() ...``, the CPU-feature banner)
straight to file descriptor 2, below Python, whatever ``TF_CPP_MIN_LOG_LEVEL`` says for some of
them.  :class:`NativeLogFilter` puts a pipe on descriptor 2 for the duration of a command and
forwards every line except those, so the command line shows only Migrator's own messages and
errors; ``--verbose`` leaves descriptor 2 alone.  Python-side TensorFlow/absl loggers are set
to errors only.  The lines dropped are counted (``dropped``), never reinterpreted.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import Self

NATIVE_LOG = re.compile(
    rb"^(?:[IWEF]\d{4} \d+:\d+:\d+\.\d+\s+\d+\s+\S+:\d+\]"          # absl / glog line prefix
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .*rebuild TensorFlow"
    rb"|This TensorFlow binary is optimized to use available CPU instructions)")


def quiet_python_loggers() -> None:
    """TensorFlow's and absl's Python loggers at errors only (retracing notes and the like)."""
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


class NativeLogFilter:
    """``with NativeLogFilter(): ...`` -- descriptor 2 goes through a filter thread."""

    def __init__(self, pattern: re.Pattern = NATIVE_LOG):
        self.pattern = pattern
        self.dropped = 0
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def _pump(self, rfd: int, out: int) -> None:
        with os.fdopen(rfd, "rb", buffering=0) as r:
            buf = b""
            while True:
                chunk = r.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._forward(line + b"\n", out)
            if buf:
                self._forward(buf, out)

    def _forward(self, line: bytes, out: int) -> None:
        if self.pattern.match(line):
            self.dropped += 1
            return
        try:
            os.write(out, line)
        except OSError:
            pass

    def __enter__(self) -> Self:
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            rfd, wfd = os.pipe()
        except OSError:           # no descriptor 2 to filter (embedded use): leave it alone
            self._saved = None
            return self
        os.dup2(wfd, 2)
        os.close(wfd)
        self._thread = threading.Thread(target=self._pump, args=(rfd, self._saved), name="native-log-filter",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)          # closes the pipe's write end held on descriptor 2
        if self._thread is not None:
            self._thread.join(2.0)       # a child process still holding the pipe: stop waiting
        os.close(self._saved)
        self._saved = None
