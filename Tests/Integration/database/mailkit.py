"""Helpers for the auth mail tests: the SMTP test server (Tests/Support/smtp_server.py) as a
process, reading what it received, and throwaway TLS certificates made with the openssl CLI."""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dbkit import ROOT, SetupError

SERVER = ROOT / "Tests" / "Support" / "smtp_server.py"


class Mail:
    """One received message: envelope, headers and the text and HTML parts."""

    def __init__(self, raw: bytes, envelope: dict):
        self.raw = raw
        self.envelope = envelope
        self.message = email.message_from_bytes(raw, policy=email.policy.default)
        self.subject = str(self.message["subject"])
        self.to = str(self.message["to"])
        self.text = ""
        self.html = ""
        for part in self.message.walk():
            if part.get_content_type() == "text/plain":
                self.text = part.get_content()
            elif part.get_content_type() == "text/html":
                self.html = part.get_content()

    @property
    def link(self) -> str:
        match = re.search(r"(https?://\S+/auth/v1/verify\?\S+)", self.text)
        assert match, f"no verify link in:\n{self.text}"
        return match.group(1)

    @property
    def code(self) -> str:
        match = re.search(r"code: (\d{6})", self.text)
        assert match, f"no code in:\n{self.text}"
        return match.group(1)


class SMTPServer:
    def __init__(self, *extra: str):
        self.directory = Path(tempfile.mkdtemp(prefix="meltybase-smtp-"))
        self.maildir = self.directory / "mail"
        self.maildir.mkdir()
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--maildir", str(self.maildir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("READY "):
            self.stop()
            raise SetupError(f"the SMTP test server did not start: {line}")
        self.port = int(line.split()[1])

    def messages(self) -> list[Mail]:
        found = []
        for meta in sorted(self.maildir.glob("*.json"), key=lambda p: int(p.stem)):
            found.append(Mail((self.maildir / f"{meta.stem}.eml").read_bytes(), json.loads(meta.read_text())))
        return found

    def count(self) -> int:
        return len(list(self.maildir.glob("*.json")))

    def wait_for(self, address: str, after: int = 0, timeout: float = 15.0) -> Mail:
        """The first message to `address` among those received after the first `after`."""
        deadline = time.monotonic() + timeout
        while True:
            for mail in self.messages()[after:]:
                if address.lower() in [r.lower() for r in mail.envelope.get("rcpt_tos", [])]:
                    return mail
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail to {address} within {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key
