"""Outgoing HTTP for relays: timeouts on everything, bounded replies, guarded targets.

Webhook URLs come from tenants, so a webhook must not reach the server's own network (SSRF):
the address a name resolves to is checked when the connection is made, and the connection goes
to that checked address (a second lookup cannot swap in another one). Loopback, private,
link-local and other non-public addresses are refused unless RELAYS_ALLOW_PRIVATE_TARGETS is
set. Redirects are never followed and proxies from the environment are not used for webhooks:
either would carry a request past the check. Teams and Slack endpoints come from settings
(the operator), not tenants, and honour the usual proxy variables.
"""

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NameResolutionError, NewConnectionError

from relays.errors import DeliveryError

USER_AGENT = "pbx-presence-relay/1"
MAX_REPLY_BYTES = 64 * 1024
MAX_RETRY_AFTER = timedelta(hours=1)


class TargetRefused(NewConnectionError):
    """The target resolves to an address relays may not reach."""

    def __str__(self) -> str:
        return self._message


def address_refusal(address: str) -> str | None:
    """Why relays may not connect to this address; None if they may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if settings.RELAYS_ALLOW_PRIVATE_TARGETS:
        return None
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_unspecified:
        return f"{ip} is not a public address"
    if ip.is_private:
        return f"{ip} is a private address"
    if not ip.is_global or ip.is_multicast:
        return f"{ip} is not a public address"
    return None


def vetted_address(host: str, port: int) -> str:
    """The address to connect to, if every address the host resolves to may be reached.

    All of them must pass: a name that also resolves to an internal address is refused, so
    the order of DNS answers cannot decide. Raises ValueError naming the reason otherwise.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        if reason := address_refusal(address):
            raise ValueError(f"refused to connect to {host}: {reason}")
    return addresses[0]


class _GuardedConnection:
    def _new_conn(self) -> socket.socket:
        try:
            checked = vetted_address(self._dns_host, self.port)
        except socket.gaierror as error:
            raise NameResolutionError(self.host, self, error) from error
        except ValueError as error:
            raise TargetRefused(self, str(error)) from None
        # Connect to the checked address; TLS still verifies the certificate for the name.
        name, self._dns_host = self._dns_host, checked
        try:
            return super()._new_conn()
        finally:
            self._dns_host = name


class _GuardedHTTPConnection(_GuardedConnection, urllib3.connection.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, urllib3.connection.HTTPSConnection):
    pass


class _GuardedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


_local = threading.local()


def _session(guarded: bool) -> requests.Session:
    """One session per thread and kind, so connections to Graph or Slack are reused."""
    name = "guarded" if guarded else "plain"
    session = getattr(_local, name, None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        if guarded:
            session.trust_env = False  # a proxy from the environment would skip the check
            session.mount("http://", _GuardedAdapter())
            session.mount("https://", _GuardedAdapter())
        setattr(_local, name, session)
    return session


@dataclass
class Reply:
    status: int
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise DeliveryError(
                f"HTTP {self.status} with a body that is not JSON: {self.snippet()}",
                status_code=self.status,
            ) from None

    def snippet(self, limit: int = 300) -> str:
        text = self.body.decode("utf-8", errors="replace").strip()
        return text if len(text) <= limit else text[:limit] + "…"

    def retry_after(self) -> timedelta | None:
        """Retry-After as seconds or an HTTP date, capped at an hour; None if absent."""
        value = self.headers.get("Retry-After", "").strip()
        if not value:
            return None
        if value.isdigit():
            wait = timedelta(seconds=int(value))
        else:
            try:
                wait = parsedate_to_datetime(value) - datetime.now(UTC)
            except (TypeError, ValueError):
                return None
        return max(timedelta(0), min(wait, MAX_RETRY_AFTER))


def request(
    method: str,
    url: str,
    *,
    guarded: bool,
    headers: dict[str, str] | None = None,
    data: bytes | dict | None = None,
    json_body: Any = None,
    params: dict[str, str] | None = None,
) -> Reply:
    """Make one request and read at most MAX_REPLY_BYTES of the reply, all within the
    timeout. Network failures become retryable DeliveryErrors; a refused target disables
    the relay."""
    timeout = settings.RELAYS_HTTP_TIMEOUT
    deadline = time.monotonic() + timeout
    try:
        response = _session(guarded).request(
            method,
            url,
            headers=headers,
            data=data,
            json=json_body,
            params=params,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        )
        with response:
            body = bytearray()
            for chunk in response.iter_content(8192):
                body += chunk
                # A reply trickling in a byte at a time must not hold the worker either.
                if len(body) >= MAX_REPLY_BYTES or time.monotonic() > deadline:
                    break
            return Reply(response.status_code, response.headers, bytes(body[:MAX_REPLY_BYTES]))
    except requests.ConnectionError as error:
        refusal = _refusal(error)
        if refusal is not None:
            raise DeliveryError(str(refusal), disable_relay=True) from None
        raise DeliveryError(f"could not connect: {_reason(error)}") from None
    except requests.Timeout:
        raise DeliveryError(f"no answer within {timeout} s") from None
    except requests.RequestException as error:
        raise DeliveryError(f"request failed: {_reason(error)}") from None


def _refusal(error: Exception) -> TargetRefused | None:
    seen = error
    for _ in range(5):
        if isinstance(seen, TargetRefused):
            return seen
        seen = getattr(seen, "reason", None) or (seen.args[0] if seen.args else None)
        if not isinstance(seen, Exception):
            return None
    return None


def _reason(error: Exception) -> str:
    reason = getattr(error.args[0], "reason", None) if error.args else None
    # urllib3 puts the connection object's repr in front of the message that matters.
    return getattr(reason, "_message", None) or str(reason or error)
