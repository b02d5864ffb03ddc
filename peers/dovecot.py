"""A real IMAP server for the tests: Debian's dovecot on 127.0.0.1, TLS, one user, Maildir.

``start_dovecot(folder)`` writes a throw-away configuration (a self-signed certificate made with
``cryptography``, a passwd-file with one user, Maildir storage in ``folder``), starts
``/usr/sbin/dovecot -F`` on a free port and returns a :class:`Dovecot` handle; ``stop()`` ends it.
As root, login and internal processes run as Debian's ``dovenull``/``dovecot`` users and mail
as ``dovecot``; otherwise everything runs as the current user.
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = Path("/usr/sbin/dovecot")


def available() -> bool:
    return DOVECOT.is_file() and os.access(DOVECOT, os.X_OK)


@dataclass
class Dovecot:
    host: str
    port: int
    user: str
    password: str
    ca_file: Path
    root: Path
    maildir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def start_dovecot(user: str = "reader", timeout: float = 20.0) -> Dovecot:
    root = Path(tempfile.mkdtemp(prefix="crusader-dovecot-"))
    root.chmod(0o755)
    password = secrets.token_urlsafe(12)
    port = _free_port()
    cert, key = _certificate(root)
    if os.geteuid() == 0:
        internal, login = "dovecot", "dovenull"
        mail_user = pwd.getpwnam("dovecot")
    else:
        me = pwd.getpwuid(os.geteuid())
        internal = login = me.pw_name
        mail_user = me
    group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
    home = root / "home"
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    if os.geteuid() == 0:
        for path in [home, *home.rglob("*")]:
            os.chown(path, mail_user.pw_uid, mail_user.pw_gid)
    (root / "users").write_text(
        f"{user}:{{PLAIN}}{password}:{mail_user.pw_uid}:{mail_user.pw_gid}::{home}\n"
    )
    run = root / "run"
    config = root / "dovecot.conf"
    config.write_text(
        f"""
protocols = imap
listen = 127.0.0.1
base_dir = {run}
state_dir = {root / "state"}
instance_name = crusader-test-{port}
log_path = {root / "dovecot.log"}
default_internal_user = {internal}
default_internal_group = {group}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root / "users"}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root / "users"}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Processed {{
    auto = create
  }}
}}
""".lstrip()
    )
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Dovecot("127.0.0.1", port, user, password, cert, root, maildir, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            log = server.log()
            server.stop()
            raise RuntimeError(f"dovecot exited: {error} {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    else:
        server.stop()
        raise RuntimeError("dovecot did not start listening")
    if process.stderr is not None:
        process.stderr.close()
    return server
