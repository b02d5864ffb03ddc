"""The real ``crusader-mail`` command in a child process: a command run to its end, or ``serve``
on 127.0.0.1 for the length of a block (no tests here)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[2]
SECRET = "serve-test-secret-key-0123456789"
NOWHERE = "http://127.0.0.1:9"  # SendGrid for these servers: nothing listens, nothing leaves
CLI = Path(sys.executable).with_name("crusader-mail")


def kill_run_when(
    config: Path, secrets: Mapping[str, str], ready: Callable[[], bool], label: str = "run"
) -> None:
    """``crusader-mail run`` with ``config`` in a child process of its own session (in the
    config's folder, ``secrets`` in its environment), killed with SIGKILL as soon as
    ``ready()``; the test fails when the run ends before, or never gets there in 60 s."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(config.parent), **secrets}
    running = subprocess.Popen(
        [str(CLI), "--config", str(config), "run"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not ready():
        assert running.poll() is None, f"{label}: the run ended before it could be killed"
        assert time.monotonic() < deadline, f"{label}: the run never got there"
        time.sleep(0.005)
    os.killpg(running.pid, signal.SIGKILL)
    running.wait(10)


def write_site_config(folder: Path, extra: str = "", templates: Path = REPO / "templates") -> Path:
    """A config in ``folder``: ``templates``, state and list under ``folder``, SendGrid where
    nothing listens; ``extra`` TOML is added after the top-level keys (before any section)."""
    config = folder / "crusader-mail.toml"
    config.write_text(
        f'templates_dir = "{templates}"\n{extra}\n'
        '[newsletter]\nname = "Biz Crusader"\nfrom_email = "news@example.com"\n'
        f'[sendgrid]\napi_url = "{NOWHERE}"\nmax_retries = 0\n'
    )
    return config


def demo_copy(folder: Path) -> Path:
    """``folder`` made what ``make demo`` works on: a copy of the repository's settings,
    example feed, templates and demo readers (so a test writes nothing into the repository)."""
    folder.mkdir()
    for name in ("crusader-mail.toml", "examples", "templates", "subscribers"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy(source, folder / name)
    return folder


def run_cli(
    folder: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``crusader-mail --config folder/crusader-mail.toml ARGS`` run in ``folder`` with only
    ``env`` (and ``PATH``) in its environment."""
    config = folder / "crusader-mail.toml"
    return subprocess.run(
        [str(REPO / ".venv/bin/crusader-mail"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=folder,
        check=False,
        timeout=120,
    )


@contextmanager
def serve_process(
    folder: Path,
    env: Mapping[str, str] | None = None,
    config: str = "",
    templates: Path = REPO / "templates",
) -> Iterator[str]:
    """``crusader-mail serve --same-host --port 0`` run in ``folder`` with the config of
    :func:`write_site_config` and ``env``; yields its ``http://127.0.0.1:PORT``. Its stderr
    is read all along (a full pipe would stall it)."""
    path = write_site_config(folder, config, templates)
    command = [str(REPO / ".venv/bin/crusader-mail"), "--config", str(path), "serve"]
    environ = {
        "PATH": "/usr/bin:/bin",
        "CRUSADER_MAIL_SECRET_KEY": SECRET,
        "SENDGRID_API_KEY": "SG.not-used",
        **(env or {}),
    }
    child = subprocess.Popen(
        [*command, "--same-host", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        cwd=folder,
    )
    assert child.stderr is not None
    stderr = child.stderr
    reader = threading.Thread(target=stderr.read, name="serve-stderr", daemon=True)
    try:
        line = stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        reader.start()
        yield found.group(0)
    finally:
        child.terminate()
        child.wait(timeout=30)
        if reader.is_alive():
            reader.join(timeout=10)
        stderr.close()


def signed_request(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int) -> dict[str, Any]:
    """httpx arguments posting ``body`` to ``/events`` signed as SendGrid signs its events."""
    stamp = str(timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "content": body,
        "headers": {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    }
