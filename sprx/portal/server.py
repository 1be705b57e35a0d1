"""Serving the portal with uvicorn, with the connection limits uvicorn leaves to its user.

uvicorn closes idle keep-alive connections and can cap concurrent connections, but it has no limit
on how long a client may take to send a request: a client sending its headers or its upload at one
byte a second holds a connection (and a partly written file) for as long as it likes. Here each
request must arrive in full (headers and body) within ``SPRX_PORTAL_REQUEST_TIMEOUT_SECONDS`` of its
first byte (or of the connection opening); a slower one gets 408 and the connection is closed, and
the partial upload is deleted by the form reader.
"""

from __future__ import annotations

import asyncio
import logging

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from sprx.settings import PortalSettings

log = logging.getLogger("sprx.portal")

# What a client too slow to send its request is sent before the connection is closed.
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     b"connection: close\r\ncontent-length: 58\r\n\r\n"
                     b"The request did not arrive in time; please send it again.\n")


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request to arrive in full."""

    request_timeout: float = 120.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the deadline for the first request as the connection opens."""
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._start_deadline()

    def _start_deadline(self) -> None:
        """(Re)start the deadline for the request now arriving."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._deadline_passed)

    def _stop_deadline(self) -> None:
        """The request arrived (or the connection is gone): no deadline."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        """Bytes of a request: a new request starts its deadline; a complete one stops it."""
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._start_deadline()
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._stop_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        self._stop_deadline()
        super().connection_lost(exc)

    def _deadline_passed(self) -> None:
        """The request is still arriving after request_timeout: answer 408 (unless answering) and close."""
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            return
        client = f"{self.client[0]}" if self.client else "unknown"
        log.warning("a request from %s did not arrive in full within %g s; connection closed", client,
                    self.request_timeout)
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app reading the body sees the client gone, and discards the upload
            cycle.message_event.set()


def build_server(app: FastAPI, settings: PortalSettings, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the app with the portal's connection limits and proxy trust."""
    protocol = type("PortalH11Protocol", (DeadlineH11Protocol,), {"request_timeout": settings.request_timeout_seconds})
    config = uvicorn.Config(
        app, host=host, port=port, http=protocol, log_level="info", server_header=False,
        proxy_headers=True, forwarded_allow_ips=settings.trusted_proxies,
        timeout_keep_alive=int(settings.keep_alive_seconds), limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=16 * 1024,
    )
    return uvicorn.Server(config)
