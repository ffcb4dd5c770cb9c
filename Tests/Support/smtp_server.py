"""A small SMTP server for tests (aiosmtpd), run as a real process.

Usage:

    python Tests/Support/smtp_server.py --port 0 --maildir DIR \
        [--starttls | --implicit-tls] [--cert CERT.pem --key KEY.pem] \
        [--auth USER:PASSWORD] [--require-auth] [--fail-rcpt ADDRESS]

- Binds 127.0.0.1. `--port 0` picks a free port. Once listening it prints exactly one
  line, `READY <port>`, to stdout (flushed), then runs until SIGTERM or SIGINT.
- Every accepted message is stored as DIR/<seq>.eml (the raw DATA bytes, CRLF line
  endings, dot-stuffing removed) and DIR/<seq>.json:
  {"mail_from": ..., "rcpt_tos": [...], "auth_user": ... or null, "tls": true/false}.
  <seq> counts from 1. The .json is written last, atomically (temp file + rename), so a
  reader can poll for it and then read the .eml.
- `--starttls` offers STARTTLS and requires it before MAIL (`require_starttls`); AUTH is
  only offered after STARTTLS. `--implicit-tls` speaks TLS from the first byte (port
  465 style). Both need `--cert` and `--key` (PEM). Without either, AUTH (when enabled)
  is offered in clear text, so clients configured with `security = none` can be tested.
- `--auth USER:PASSWORD` enables AUTH PLAIN and LOGIN with that one account; a wrong
  password gets 535. `--require-auth` answers 530 to MAIL without AUTH.
- `--fail-rcpt ADDRESS` answers 550 to RCPT TO for that address (case-insensitive).

Tests make throwaway certificates with the openssl CLI, for example:

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -days 1 -keyout key.pem -out cert.pem

The server runs aiosmtpd's SMTP protocol on its own asyncio server (what aiosmtpd's
Controller does internally) because the Controller cannot report a port chosen by the
kernel for `--port 0`; the implicit-TLS listener passes the server-side `ssl_context`
to `create_server` exactly as the Controller does.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import warnings
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Mailbox:
    """aiosmtpd handler: stores messages in a directory, refuses one recipient."""

    def __init__(self, maildir: Path, fail_rcpt: str | None):
        self.maildir = maildir
        self.fail_rcpt = fail_rcpt.lower() if fail_rcpt else None
        self.sequence = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.fail_rcpt is not None and address.lower() == self.fail_rcpt:
            return f"550 5.1.1 <{address}>: recipient refused by the test server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.sequence += 1
        base = self.maildir / str(self.sequence)
        content = envelope.original_content
        if content is None:
            content = envelope.content if isinstance(envelope.content, bytes) else b""
        base.with_suffix(".eml").write_bytes(content)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        auth_user = session.auth_data if session.authenticated else None
        if isinstance(auth_user, bytes):
            auth_user = auth_user.decode("utf-8", "replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth_user,
            "tls": tls,
        }
        temporary = self.maildir / f".{self.sequence}.json.tmp"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, base.with_suffix(".json"))
        return "250 OK message stored"


def make_authenticator(account: str):
    user, _, password = account.partition(":")

    def authenticate(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        secret = auth_data.password.decode("utf-8", "replace")
        if login == user and secret == password:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    return authenticate


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="aiosmtpd test server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir", required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--starttls", action="store_true")
    mode.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth", metavar="USER:PASSWORD")
    parser.add_argument("--require-auth", action="store_true")
    parser.add_argument("--fail-rcpt", metavar="ADDRESS")
    arguments = parser.parse_args()
    if (arguments.starttls or arguments.implicit_tls) and not (arguments.cert and arguments.key):
        parser.error("--starttls and --implicit-tls need --cert and --key")
    if arguments.require_auth and not arguments.auth:
        parser.error("--require-auth needs --auth")
    if arguments.auth and ":" not in arguments.auth:
        parser.error("--auth takes USER:PASSWORD")
    return arguments


async def serve(arguments: argparse.Namespace) -> None:
    maildir = Path(arguments.maildir)
    maildir.mkdir(parents=True, exist_ok=True)
    handler = Mailbox(maildir, arguments.fail_rcpt)

    context = None
    if arguments.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(arguments.cert, arguments.key)

    loop = asyncio.get_running_loop()
    smtp_options = {
        "hostname": "smtp.test",
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "auth_required": arguments.require_auth,
        # AUTH is offered after STARTTLS in --starttls mode; on an implicit-TLS or a
        # plain listener it is offered at once (aiosmtpd cannot tell implicit TLS).
        "auth_require_tls": bool(arguments.starttls),
        "loop": loop,
    }
    if arguments.auth:
        smtp_options["authenticator"] = make_authenticator(arguments.auth)
    else:
        # No account: every AUTH attempt fails (535).
        smtp_options["auth_callback"] = lambda mechanism, login, password: False
    if arguments.starttls:
        smtp_options["tls_context"] = context
        smtp_options["require_starttls"] = True

    def factory() -> SMTP:
        return SMTP(handler, **smtp_options)

    server = await loop.create_server(
        factory,
        host="127.0.0.1",
        port=arguments.port,
        ssl=context if arguments.implicit_tls else None,
    )
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    # A parent may hand down a signal mask that blocks SIGTERM (Foundation's Process
    # started from a Swift test does): unblock the signals that stop the server.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    # aiosmtpd 1.4 warns about its own Session.login_data on every AUTH.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    arguments = parse_arguments()
    asyncio.run(serve(arguments))


if __name__ == "__main__":
    main()
