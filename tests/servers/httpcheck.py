"""A verifying HTTP client: every response body is compared byte for byte.

Plain sockets and http.client; 127.0.0.1 only.  Each check returns a list of
problems (empty when everything matched) so a test can show all of them.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass(frozen=True)
class Expected:
    files: dict[str, bytes]

    def names(self) -> list[str]:
        return sorted(self.files)


def _check(
    resp: http.client.HTTPResponse, name: str, want: bytes, rng: tuple[int, int] | None
) -> str | None:
    body = resp.read()
    if rng is None:
        if resp.status != 200:
            return f"{name}: status {resp.status}, expected 200"
        if body != want:
            return f"{name}: body of {len(body)} bytes differs from the file ({len(want)} bytes)"
        return None
    first, last = rng
    if resp.status != 206:
        return f"{name} bytes={first}-{last}: status {resp.status}, expected 206"
    cr = resp.getheader("Content-Range", "")
    if cr != f"bytes {first}-{last}/{len(want)}":
        return f"{name}: Content-Range {cr!r}, expected bytes {first}-{last}/{len(want)}"
    if body != want[first : last + 1]:
        return f"{name} bytes={first}-{last}: body differs"
    return None


def fetch_all(
    port: int,
    expected: Expected,
    keepalive: bool,
    ranges: bool = True,
    seed: int = 0,
    rounds: int = 1,
) -> list[str]:
    """Every file (and, with ranges, a random range of each) `rounds` times,
    over one kept-alive connection or one connection per request."""
    rnd = random.Random(seed)
    problems: list[str] = []
    conn: http.client.HTTPConnection | None = None
    for _ in range(rounds):
        for name in expected.names():
            want = expected.files[name]
            cases: list[tuple[int, int] | None] = [None]
            if ranges and len(want) > 2:
                first = rnd.randrange(0, len(want) - 1)
                cases.append((first, rnd.randrange(first, len(want))))
            for rng in cases:
                if conn is None or not keepalive:
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                headers = {} if keepalive else {"Connection": "close"}
                if rng is not None:
                    headers["Range"] = f"bytes={rng[0]}-{rng[1]}"
                try:
                    conn.request("GET", f"/{name}", headers=headers)
                    problem = _check(conn.getresponse(), name, want, rng)
                except (OSError, http.client.HTTPException) as e:
                    problem = f"{name}: {type(e).__name__}: {e}"
                    conn.close()
                    conn = None
                if problem:
                    problems.append(problem)
    if conn is not None:
        conn.close()
    return problems


def concurrent_load(
    port: int, expected: Expected, clients: int = 24, rounds: int = 3, ranges: bool = True
) -> tuple[int, list[str]]:
    """`clients` threads at once, half kept-alive and half not, all verifying;
    returns the number of requests made and the problems."""

    def one(i: int) -> list[str]:
        return fetch_all(port, expected, keepalive=i % 2 == 0, ranges=ranges, seed=i, rounds=rounds)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(clients)))
    per_client = rounds * sum(2 if ranges and len(v) > 2 else 1 for v in expected.files.values())
    return clients * per_client, [p for r in results for p in r]


def reset_mid_response(port: int, path: str, count: int, read_bytes: int = 8192) -> int:
    """`count` clients that request a large file, read a little of it and reset
    the connection (SO_LINGER 0); returns how many got a response started."""
    started = 0
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            got = b""
            while len(got) < read_bytes:
                chunk = s.recv(read_bytes - len(got))
                if not chunk:
                    break
                got += chunk
            if got.startswith(b"HTTP/1.1 200"):
                started += 1
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return started


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
