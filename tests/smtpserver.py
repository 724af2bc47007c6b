"""A real SMTP server on 127.0.0.1 (aiosmtpd) that refuses, defers and drops on request."""

from __future__ import annotations

import email
import email.policy
import socket
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    refuse: set[str] = field(default_factory=set)  # 550 at RCPT
    defer: set[str] = field(default_factory=set)  # 451 at RCPT
    drop_after: int | None = None  # close the connection after every N accepted messages
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)
    connections: int = 0
    _since_drop: int = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:  # fmt: skip
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        if self.drop_after is not None and self._since_drop >= self.drop_after:
            self._since_drop = 0
            server.transport.close()  # a real drop: the client sees the connection go
            return "421 4.3.2 closing"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        if address in self.refuse:
            return "550 5.1.1 no such user"
        if address in self.defer:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
        self._since_drop += 1
        return "250 OK queued"

    def copies(self) -> Counter[str]:
        return Counter(r for rcpts, _ in self.messages for r in rcpts)

    def parsed(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for _, raw in self.messages
        ]


class SmtpServer:
    def __init__(self, **controller_args: Any) -> None:
        self.mailbox = Mailbox()
        with socket.socket() as probe:  # a free port (the Controller cannot take 0)
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, **controller_args
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
