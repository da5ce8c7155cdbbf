"""Socket Mode: the WebSocket side of apps.connections.open.

Slack hands out a single-use `wss://…/link/?ticket=…&app_id=…` URL; the app connects, gets `hello`, then
envelopes (`events_api`, `slash_commands`, `interactive`), each sent to one of the app's open connections,
and answers each with `{"envelope_id": …, "payload"?: …}`. Liveness is WebSocket ping/pong frames.
`disconnect` messages (`warning`, `refresh_requested`, …) ask the client to reconnect through a new URL.

This runs its own `websockets` server (a second port, as Slack's WebSocket host differs from slack.com)
so that a connection can also be dropped abruptly, without a close frame, as a network would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)
TICKET_TTL = 60.0  # seconds a URL from apps.connections.open stays usable (once)
MAX_CONNECTIONS = 10


class SocketHub:
    """Open connections, tickets, sending envelopes and receiving acks."""

    def __init__(self, app_id: str, on_ack: Callable[[str, Any], None]) -> None:
        self.app_id = app_id
        self.on_ack = on_ack
        self.port = 0
        self._tickets: dict[str, float] = {}
        self._connections: list[ServerConnection] = []
        self.sessions = 0  # connections accepted since start
        self._turn = itertools.count()
        self._server: Server | None = None
        self._host = "127.0.0.1"

    # ------------------------------------------------------------------ lifecycle (on the server loop)

    async def start(self, sock: socket.socket) -> None:
        self._host, self.port = sock.getsockname()[:2]
        self._server = await serve(self._session, sock=sock, process_request=self._check_ticket,
                                   compression=None, max_size=2**24)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ------------------------------------------------------------------ tickets

    def issue_url(self) -> str | None:
        """A fresh single-use URL, or None when the app already has its 10 connections."""
        if len(self._connections) >= MAX_CONNECTIONS:
            return None
        ticket = secrets.token_hex(16)
        self._tickets[ticket] = time.monotonic()
        return f"ws://{self._host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        issued = self._tickets.pop(params.get("ticket", ""), None)
        if path.rstrip("/") != "/link" or issued is None or time.monotonic() - issued > TICKET_TTL:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")
        return None

    # ------------------------------------------------------------------ connections

    @property
    def connected(self) -> int:
        return len(self._connections)

    async def _session(self, connection: ServerConnection) -> None:
        self._connections.append(connection)
        self.sessions += 1
        try:
            await connection.send(json.dumps({
                "type": "hello", "num_connections": len(self._connections),
                "debug_info": {"host": "applink-local-1", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }))
            async for raw in connection:
                self._receive(raw)
        except ConnectionClosed:
            pass
        finally:
            if connection in self._connections:
                self._connections.remove(connection)

    def _receive(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("ignored a non-JSON Socket Mode message: %r", raw[:200])
            return
        if isinstance(message, dict) and message.get("envelope_id"):
            self.on_ack(message["envelope_id"], message.get("payload"))

    async def send(self, envelope: dict) -> bool:
        """Send to one open connection (taken in turn); False when none is open or the send failed."""
        if not self._connections:
            return False
        connection = self._connections[next(self._turn) % len(self._connections)]
        try:
            await connection.send(json.dumps(envelope))
            return True
        except ConnectionClosed:
            return False

    async def disconnect_all(self, reason: str, close_after: float | None = 1.0) -> None:
        """Send `{"type": "disconnect", "reason": …}` to every connection; close them a moment later
        (Slack keeps a `warning`ed connection open until its `refresh_requested`)."""
        connections = list(self._connections)
        for connection in connections:
            try:
                await connection.send(json.dumps({
                    "type": "disconnect", "reason": reason, "num_connections": len(connections),
                    "debug_info": {"host": "applink-local-1"}, "connection_info": {"app_id": self.app_id},
                }))
            except ConnectionClosed:
                continue
        if reason == "warning" or close_after is None:
            return
        await asyncio.sleep(close_after)
        for connection in connections:
            await connection.close(1001, reason)

    def drop_all(self) -> None:
        """Cut every connection without a close frame, as a lost network does."""
        for connection in list(self._connections):
            connection.transport.abort()
