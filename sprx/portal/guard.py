"""The portal's defences against floods: rate limits per client and per service, and a cache of keys seen lately.

Every check of an access key costs an scrypt (tens of milliseconds and 16 MB), so a key is checked only
when it has the shape of a real one (``store.credential_service``: a malformed key costs nothing), and
only within the key-check limits: per client (IP address, as the trusted proxy reports it) and, for
failed checks, per service named. A key that passed is remembered (as its SHA-256, in memory only) for
a few minutes, so a script calling the API with its key is not charged an scrypt per request; its
credential is still looked up each time, so revoking it takes effect at once. Limits use the
``limits`` library's moving windows in memory: they reset when the portal restarts, and apply per
portal process (run one).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

# How long a key that passed its check is remembered, seconds.
KEY_CACHE_SECONDS = 300
# Most keys remembered at once (the oldest are forgotten first).
KEY_CACHE_SIZE = 1024
# Longest a request waits for the check of the same key already running for its client, seconds.
CHECK_WAIT_SECONDS = 30

T = TypeVar("T")


class RateLimited(Exception):
    """Too many requests of one kind; ``message`` says which, ``retry_after`` when to try again (seconds)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class _Limit:
    """One named limit: its items (e.g. 10/minute) and what a client is told when over it."""

    name: str
    items: tuple[RateLimitItem, ...]
    message: str


class Guard:
    """The rate limits in force for one portal app, and its cache of keys that passed."""

    def __init__(self, rate_limit: str, sign_in_rate_limit: str, upload_rate_limit: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._requests = _Limit("requests", tuple(parse_many(rate_limit)),
                                "Too many requests from your address; wait a moment and try again.")
        self._key_checks = _Limit("key-checks", tuple(parse_many(sign_in_rate_limit)),
                                  "Too many sign-in attempts; wait a minute and try again.")
        self._uploads = _Limit("uploads", tuple(parse_many(upload_rate_limit)),
                               f"Too many uploads ({upload_rate_limit}); wait a while and upload the sheet again.")
        self._keys: dict[str, tuple[float, int]] = {}
        self._keys_lock = threading.Lock()
        self._counting = threading.Lock()  # a test and its hit are one step, so parallel requests cannot overshoot
        # clients whose key is being checked now: the key's digest, set when done, the outcome, requests waiting
        self._checking: dict[str, tuple[str, threading.Event, list[tuple[str, Any]], list[int]]] = {}

    def _hit(self, limit: _Limit, *identifiers: str) -> None:
        """Count one event against a limit for each identifier; RateLimited (counting nothing more) when over."""
        with self._counting:
            for item in limit.items:
                for identifier in identifiers:
                    if not self._limiter.test(item, limit.name, identifier):
                        reset = self._limiter.get_window_stats(item, limit.name, identifier).reset_time
                        raise RateLimited(limit.message, math.ceil(reset - time.time()))
            for item in limit.items:
                for identifier in identifiers:
                    self._limiter.hit(item, limit.name, identifier)

    def request(self, client: str) -> None:
        """Count any request from a client."""
        self._hit(self._requests, f"client:{client}")

    def key_check(self, client: str, service_id: str) -> None:
        """Before an scrypt: count it for the client; refuse when the client, or failures for the service, are over."""
        for item in self._key_checks.items:
            if not self._limiter.test(item, "key-failures", f"service:{service_id}"):
                reset = self._limiter.get_window_stats(item, "key-failures", f"service:{service_id}").reset_time
                raise RateLimited(self._key_checks.message, math.ceil(reset - time.time()))
        self._hit(self._key_checks, f"client:{client}")

    def check_once(self, client: str, credential: str, check: Callable[[], T]) -> T:
        """Run ``check`` (a key check: an scrypt) with one check per client at a time.

        The same key sent again while its check runs (a script's parallel uploads) waits for that check and
        shares its result; another key from the same client meanwhile gets RateLimited at once. So a flood
        from one address holds one scrypt slot, never both, and other clients are not queued behind it."""
        digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()
        with self._counting:
            running = self._checking.get(client)
            if running is not None and running[0] != digest:
                raise RateLimited("A sign-in from your address is being checked; wait a moment and try again.", 1)
            leader = running is None
            if leader:
                running = self._checking[client] = (digest, threading.Event(), [], [])
            else:
                running[3].append(1)
        _, done, outcome, _ = running
        if not leader:
            done.wait(CHECK_WAIT_SECONDS)
            if not outcome:
                raise RateLimited("A sign-in from your address is being checked; wait a moment and try again.", 1)
            kind, value = outcome[0]
            if kind == "error":
                raise value
            return value
        try:
            result = check()
            outcome.append(("result", result))
            return result
        except Exception as error:
            outcome.append(("error", error))
            raise
        finally:
            with self._counting:
                self._checking.pop(client, None)
            done.set()

    def key_failed(self, service_id: str) -> None:
        """Count a failed key check against the service it named."""
        for item in self._key_checks.items:
            self._limiter.hit(item, "key-failures", f"service:{service_id}")

    def upload(self, client: str, service_id: str) -> None:
        """Count an upload for the client and for the service."""
        self._hit(self._uploads, f"client:{client}", f"service:{service_id}")

    def remembered(self, credential: str) -> int | None:
        """The credential id of a key that passed its check lately, or None."""
        digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()
        with self._keys_lock:
            found = self._keys.get(digest)
            if found is None or found[0] < time.monotonic():
                self._keys.pop(digest, None)
                return None
            return found[1]

    def remember(self, credential: str, credential_id: int) -> None:
        """Remember a key that passed its check, for KEY_CACHE_SECONDS."""
        digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()
        with self._keys_lock:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.pop(next(iter(self._keys)))
            self._keys[digest] = (time.monotonic() + KEY_CACHE_SECONDS, credential_id)
