"""A real ``crusader-mail serve`` in a subprocess, on 127.0.0.1 (tests and benches).

``serve_process(folder, env, port)`` starts the installed console script in ``folder`` (its
``crusader-mail.toml``) with exactly ``env``, waits until it answers over HTTP, and stops it
(SIGTERM) when the block ends; what it wrote to stderr is then in :attr:`Served.stderr`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = Path(sys.executable).with_name("crusader-mail")
START_WAIT = 60.0  # seconds: a safety net, a healthy serve answers within a second or two


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    stderr: str = ""


@contextmanager
def serve_process(folder: Path, env: dict[str, str], port: int, *extra: str) -> Iterator[Served]:
    """``crusader-mail serve --port PORT *extra`` in ``folder``, answering when the block runs."""
    process = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), *extra],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    served = Served(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + START_WAIT
        with httpx.Client(base_url=served.url, timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"serve exited: {process.communicate()[1].decode()}")
                try:
                    client.get("/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("serve did not answer") from None
                    time.sleep(0.05)
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            _out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
        served.stderr = err.decode(errors="replace")
