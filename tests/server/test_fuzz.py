"""Fuzzing the HTTP surface: POST /api/events and GET /events against a real server process.

Hypothesis generates JSON documents (with the tokens a parser trips on), valid event lists and
mutations of them, byte-level damage to valid bodies, odd headers and junk query strings. For
every request, whatever it was:

- the status is below 500;
- a refused publish changed nothing: ``events_emitted`` is the same before and after;
- an accepted publish (202) accepted exactly the events it said, and, once the batcher settles,
  ``sse_events`` holds exactly the events of the accepted requests, counted in the database;
- a stream opened and dropped at once is given back to the hub (no leaked client);
- afterwards /healthz answers 200 and a publish reaches a subscriber.

The server is one process for the module (``python -m server serve`` on a fresh database), driven
by blocking sockets and sync httpx, as Hypothesis does not run async tests. Each test runs in CI
with a small, derandomised budget; its ``long`` variant (``-m slow``) explores far more.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import asyncpg
import httpx
import msgspec
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.pg import fresh_database
from tests.server_process import ServerProcess

PUBLISH_TOKEN: Final = "fuzz-publish"
SUBSCRIBE_TOKEN: Final = "fuzz-subscribe"
# Small limits, so that oversize bodies, events and lists are cheap to generate and send.
MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_REQUEST_EVENTS: Final = 20
MAX_EVENT_BYTES: Final = 2048
SERVER_ENV: Final = {
    "SSE_PUBLISH_TOKEN": PUBLISH_TOKEN,
    "SSE_SUBSCRIBE_TOKEN": SUBSCRIBE_TOKEN,
    "SSE_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    "SSE_MAX_REQUEST_EVENTS": str(MAX_REQUEST_EVENTS),
    "SSE_MAX_EVENT_BYTES": str(MAX_EVENT_BYTES),
    "SSE_BATCH_TIMEOUT_SECONDS": "0.05",
    # Dynamic sizing emits BATCH_SIZE_ADJUSTED events of its own, which the ledger would count.
    "SSE_DYNAMIC_BATCHING": "false",
}
AUTH: Final = {"Authorization": f"Bearer {PUBLISH_TOKEN}"}
JSON_AUTH: Final = {"Content-Type": "application/json", **AUTH}
# A socket read that waits longer than this means the server stopped answering: a finding.
SOCKET_TIMEOUT_SECONDS: Final = 10.0
SETTLE_TIMEOUT_SECONDS: Final = 30.0

# The CI budget per test, and the long run's (pytest -m slow tests/server/test_fuzz.py).
CI_EXAMPLES: Final = 250
BUDGETS: Final = [
    pytest.param(CI_EXAMPLES, id="ci"),
    pytest.param(3000, id="long", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
]


def fuzz_settings(examples: int) -> settings:
    """CI runs are derandomised (the same inputs every run); long runs explore new ground each time."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=examples == CI_EXAMPLES,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


# --- the server under test -------------------------------------------------------------------


@dataclass
class Target:
    """The server process, an HTTP client on it, and a connection to its database."""

    process: ServerProcess
    http: httpx.Client
    portal: BlockingPortal
    db: asyncpg.Connection

    @property
    def port(self) -> int:
        return self.process.port

    def stats(self) -> dict[str, Any]:
        response = self.http.get("/api/stats")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def emitted(self) -> int:
        count: int = self.stats()["batcher"]["events_emitted"]
        return count

    def stored(self) -> int:
        """Events in ``sse_events``, counted by PostgreSQL (an aggregate row holds several)."""
        count: int = self.portal.call(self.db.fetchval, "SELECT coalesce(sum(event_count), 0) FROM sse_events")
        return count

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; stats: {self.stats()['batcher']}")
            time.sleep(0.02)


@dataclass
class Ledger:
    """What one test's requests were told, checked against what the server did."""

    target: Target
    emitted_before: int
    stored_before: int
    accepted: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @classmethod
    def open(cls, target: Target) -> Ledger:
        # Start from a settled server: whatever an earlier test accepted is stored by now.
        emitted = target.emitted()
        target.wait_for(lambda: target.stored() == emitted, "earlier events to be stored")
        return cls(target, emitted, emitted)

    def record(self, status: int | None, body: bytes, emitted_before: int, what: object) -> None:
        """Check one publish: below 500, and it changed the count of events by what it said."""
        if status is not None:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            assert status < 500, f"{status} for {what!r:.2000}: {body[:500]!r}"
        emitted = self.target.emitted()
        if status == 202:
            accepted = msgspec.json.decode(body)["accepted"]
            assert emitted - emitted_before == accepted, f"202 said {accepted}, emitted {emitted - emitted_before}"
            self.accepted += accepted
        else:
            assert emitted == emitted_before, f"refused with {status} yet emitted {emitted - emitted_before}: {what!r}"

    def post(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        before = self.target.emitted()
        response = self.target.http.post(
            "/api/events", content=content, headers=JSON_AUTH if headers is None else headers
        )
        self.record(response.status_code, response.content, before, content)
        return response

    def covered(self, *statuses: int) -> None:
        """The run met each of ``statuses``: a strategy that never reaches one has stopped testing it."""
        missing = set(statuses) - self.statuses.keys()
        assert not missing, f"no {sorted(missing)} among {self.statuses}"

    def settle(self) -> None:
        """Every accepted event, and nothing else, reaches ``sse_events``."""
        target, expected = self.target, self.stored_before + self.accepted
        assert target.emitted() == self.emitted_before + self.accepted
        target.wait_for(lambda: target.stats()["batcher"]["buffer_depth"] == 0, "the buffer to empty")
        target.wait_for(
            lambda: (
                (stats := target.stats()["batcher"])["events_stored"] >= self.emitted_before + self.accepted
                or stats["rejected_messages"] > 0
                or stats["dead_lettered_batches"] > 0
            ),
            "the accepted events to be written",
        )
        stats = target.stats()["batcher"]
        assert stats["rejected_messages"] == 0, f"the store refused accepted events: {stats}"
        assert stats["dead_lettered_batches"] == 0, f"accepted events were dead-lettered: {stats}"
        assert target.stored() == expected, f"stored {target.stored()}, expected {expected}; statuses {self.statuses}"


@pytest.fixture(scope="module")
def target(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One server process on a fresh database for the module; the database is read from a portal's loop."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(fresh_database(pg_server)) as dsn,
    ):
        process = ServerProcess(dsn, tmp_path_factory.mktemp("fuzz"), demo=False, env=SERVER_ENV)
        process.start()
        try:
            with httpx.Client(base_url=process.url, timeout=SOCKET_TIMEOUT_SECONDS) as http:
                db = portal.call(asyncpg.connect, dsn)
                try:
                    yield Target(process, http, portal, db)
                finally:
                    portal.call(db.close)
        finally:
            assert process.stop() == 0, process.log.read_text()[-3000:]


def assert_healthy(target: Target) -> None:
    """/healthz is 200, no stream is left open, and a published event reaches a subscriber."""
    assert target.http.get("/healthz").status_code == 200
    target.wait_for(lambda: target.stats()["hub"]["clients"] == 0, "dropped streams to be released")
    params = {"token": SUBSCRIBE_TOKEN, "types": "FUZZ_CANARY"}
    with target.http.stream("GET", "/events", params=params) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        event = {"type": "FUZZ_CANARY", "data": {"job_id": 1}, "priority": "critical"}
        assert target.http.post("/api/events", json=event, headers=AUTH).status_code == 202
        # Pings keep the read timeout from firing: bound the wait here instead.
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        data = next((line for line in lines if line.startswith("data: ") or time.monotonic() > deadline), "")
        assert data.startswith("data: "), "the canary event never reached its subscriber"
        assert msgspec.json.decode(data[6:])["type"] == "FUZZ_CANARY"


# --- raw HTTP, for what httpx would not send -------------------------------------------------


def exchange(
    port: int, request: bytes, *, half_close: bool = False, head_only: bool = False
) -> tuple[int | None, bytes]:
    """Send ``request`` on a new connection; return the status (None: closed unanswered) and the response.

    ``half_close`` shuts our sending side after the request (a body shorter than its Content-Length
    then ends in EOF rather than a wait). ``head_only`` stops reading after the headers.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        try:
            sock.sendall(request)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we sent: read its answer
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if head_only and b"\r\n\r\n" in received:
                    break
        except ConnectionResetError:
            pass
    if not received:
        return None, b""
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), received[:200]
    return int(status_line.split()[1]), received


def response_body(raw: bytes) -> bytes:
    """The body of a Content-Length (not chunked) response."""
    return raw.partition(b"\r\n\r\n")[2]


# --- strategies: JSON text with the tokens parsers trip on ------------------------------------

_ESCAPES = st.sampled_from(
    [
        "\\ud800",  # lone high surrogate
        "\\udc00",  # lone low surrogate
        "\\ud800\\u0041",  # high surrogate, then not a low one
        "\\ud83d\\ude00",  # a valid pair
        "\\u0000",
        "\\u001f",
        '\\"',
        "\\\\",
        "\\/",
        "\\n",
        "\\x41",  # not a JSON escape
        "\\u12",  # short
        "\\",
    ]
)
_PLAIN = st.text(st.characters(exclude_categories=["Cs"], exclude_characters='"\\'), max_size=12)
_STRING = st.lists(_PLAIN | _ESCAPES, max_size=4).map(lambda parts: '"' + "".join(parts) + '"')
_NUMBER = st.one_of(
    st.integers().map(str),
    st.integers(min_value=10**18, max_value=10**40).map(str),
    st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n),  # past msgspec's int range
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", "01", "1.", ".5"]),
    st.sampled_from(["0x10", "+1", "1e", "1_000", "nan", "inf", "True", "None", "undefined"]),
)
_SCALAR = st.one_of(st.sampled_from(["null", "true", "false"]), _NUMBER, _STRING)


def _containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    arrays = st.lists(children, max_size=5).map(lambda items: "[" + ",".join(items) + "]")
    members = st.lists(st.tuples(_STRING, children), max_size=5)
    objects = members.map(lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}")
    return arrays | objects


# Nesting around the decoder's recursion limit (about 1000), inside an otherwise valid event:
# what the decoder lets through, PostgreSQL's jsonb must take too.
_DEEP = st.integers(min_value=1, max_value=1200).map(lambda depth: "[" * depth + "]" * depth)
json_text = st.one_of(
    st.recursive(_SCALAR, _containers, max_leaves=25),
    st.recursive(_SCALAR, _containers, max_leaves=25),
    _DEEP.map(lambda deep: f'{{"type": "DEEP", "data": {{"d": {deep}}}}}'),
)

# --- strategies: events, valid and then damaged ----------------------------------------------

_TYPE = st.from_regex(r"[A-Z0-9_]{1,64}", fullmatch=True)
_SOURCE = st.from_regex(r"[A-Za-z0-9._\-]{1,64}", fullmatch=True)
# Values a JSON decoder can hand back; NUL is not among them on purpose (it is a mutation below).
_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)


def _nest(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A def, not a lambda: Hypothesis checks from the source that a lambda recurses, and that check
    # wrongly refused this one (as a HypothesisDeprecationWarning, an error here) in long runs.
    return st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4)


_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    _nest,
    max_leaves=12,
)
_DATA = st.dictionaries(_TEXT, _VALUE, max_size=5).filter(lambda d: len(msgspec.json.encode(d)) <= MAX_EVENT_BYTES)


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {"type": draw(_TYPE), "data": draw(_DATA)}
    if draw(st.booleans()):
        event["source"] = draw(st.none() | _SOURCE)
    if draw(st.booleans()):
        event["priority"] = draw(st.sampled_from(["normal", "critical"]))
    if draw(st.booleans()):
        event["key"] = draw(st.none() | _TEXT.filter(bool).map(lambda s: s[:256]))
    return event


valid_events = st.lists(valid_event(), min_size=1, max_size=MAX_REQUEST_EVENTS)
_FIELD = st.sampled_from(["type", "data", "source", "priority", "key"])
_ANY_JSON = _VALUE | st.lists(_VALUE, max_size=3) | st.dictionaries(_TEXT, _VALUE, max_size=3)
_BAD_VALUES = {
    "type": st.sampled_from(["", "lower", "A B", "A" * 65, "É", "A\x00", "A\n"]) | _ANY_JSON,
    "data": _ANY_JSON.filter(lambda v: not isinstance(v, dict))
    | st.just({"blob": "x" * MAX_EVENT_BYTES})
    | st.just({"blob": "x" * MAX_REQUEST_BYTES})
    | st.just({"s": "nul\x00"})
    | st.just({"nul\x00key": 1}),
    "source": st.sampled_from(["", "a b", "a" * 65, "ä", "a/b", "a\x00"]) | _ANY_JSON.filter(lambda v: v is not None),
    "priority": st.sampled_from(["", "NORMAL", "urgent", "normal ", "critical\x00"]) | _ANY_JSON,
    "key": st.sampled_from(["", "k" * 257, "\x00", "k\x00"])
    | _ANY_JSON.filter(lambda v: v is not None and not isinstance(v, str)),
}


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[list[Any], bool]:
    """A valid list, then damaged; returns it and whether it is still certainly valid."""
    events: list[Any] = draw(valid_events)
    # Mostly one mutation, so the one bad thing is what the server must find.
    mutations = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    for _ in range(mutations):
        index = draw(st.integers(min_value=0, max_value=len(events) - 1))
        event = events[index]
        how = draw(st.sampled_from(["drop", "rename", "bad", "bad", "bad", "nul", "replace", "extra", "many"]))
        if how == "many":
            events = events * (MAX_REQUEST_EVENTS // len(events) + 1)
        elif how == "replace":
            events[index] = draw(_ANY_JSON)
        elif not isinstance(event, dict):
            continue
        elif how == "drop":
            event.pop(draw(st.sampled_from(["type", "data"])), None)
        elif how == "rename" and event:
            name = draw(st.sampled_from(sorted(event)))
            event[draw(_TEXT | _FIELD.map(str.upper))] = event.pop(name)
        elif how == "nul":
            # PostgreSQL refuses NUL in jsonb and text: wherever it hides, it must be refused at the door.
            name = draw(_FIELD)
            at = draw(st.sampled_from(["start", "end", "alone"]))
            value = str(event.get(name) or "k")
            nul = {"start": "\x00" + value, "end": value + "\x00", "alone": "\x00"}[at]
            event[name] = {nul: 1} if name == "data" else nul
        elif how == "extra":
            event[draw(_TEXT)] = draw(_ANY_JSON)
        else:
            name = draw(_FIELD)
            event[name] = draw(_BAD_VALUES[name])
    return events, mutations == 0


def _mutate_bytes(body: bytes, draw: st.DrawFn) -> bytes:
    if not body:  # truncated to nothing by an earlier mutation
        return draw(st.binary(min_size=1, max_size=8))
    # Hypothesis leans to the first choice and to small indices: the first kind below is the one
    # most likely to keep the body JSON (a flipped letter in a string), so that some damaged
    # bodies still decode and reach validation, or are accepted.
    how = draw(st.sampled_from(["flip", "insert", "duplicate", "delete", "invalid-utf8", "truncate"]))
    # Spread the small indices Hypothesis prefers over the whole body (a prime stride).
    index = draw(st.integers(min_value=0, max_value=len(body))) * 7919 % (len(body) + 1)
    if how == "flip":
        index = min(index, len(body) - 1)
        flipped = body[index] ^ draw(st.integers(min_value=1, max_value=255))
        if draw(st.booleans()):
            flipped = flipped % 0x60 + 0x20  # printable ASCII
        return body[:index] + bytes([flipped]) + body[index + 1 :]
    if how == "insert":
        return body[:index] + draw(st.binary(min_size=1, max_size=8)) + body[index:]
    if how == "invalid-utf8":
        garbage = draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"])
        )
        return body[:index] + garbage + body[index:]
    if how == "delete":
        return body[:index] + body[index + draw(st.integers(min_value=1, max_value=8)) :]
    if how == "truncate":
        return body[:index]
    index = min(index, len(body) - 1)  # duplicate at least one byte
    return body[:index] + body[index : index + draw(st.integers(min_value=1, max_value=64))] + body[index:]


@st.composite
def damaged_bodies(draw: st.DrawFn) -> bytes:
    body = msgspec.json.encode(draw(valid_events))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        body = _mutate_bytes(body, draw)
    return body


# --- strategies: headers and query strings ---------------------------------------------------

_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
_CONTENT_TYPE = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "APPLICATION/JSON",
            " application/json ",
            "application/json; charset=utf-8",
            'application/json; charset="UTF-8"',
            "application/json;charset=utf8",
            "application/json; charset=latin-1",
            "application/json; charset=",
            "application/json; charset",
            "application/json;;;",
            "application/json; boundary=x; charset=utf-8; charset=ascii",
            "application/jsonx",
            "application/json, text/plain",
            "text/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ]
    ),
    st.builds(lambda a, b: f"application/json;{a}={b}", _HEADER_TEXT, _HEADER_TEXT),
    _HEADER_TEXT,
)
_ENCODING = (
    st.sampled_from(["identity", "IDENTITY", "", "gzip", "deflate", "br", "identity, gzip", "chunked"]) | _HEADER_TEXT
)
_SUBSCRIBE_AUTH = st.sampled_from([f"Bearer {SUBSCRIBE_TOKEN}", f"bearer {SUBSCRIBE_TOKEN} "])
_MOSTLY = st.sampled_from([True, True, True, False])
_GOOD_AUTHORIZATION = st.sampled_from(
    [f"Bearer {PUBLISH_TOKEN}", f"bearer {PUBLISH_TOKEN}", f"BEARER  {PUBLISH_TOKEN} "]
)
_AUTHORIZATION = st.one_of(
    st.sampled_from(
        [
            f"Bearer {PUBLISH_TOKEN}",
            f"bearer {PUBLISH_TOKEN}",
            f"BEARER   {PUBLISH_TOKEN}  ",
            f"Bearer {PUBLISH_TOKEN}x",
            f"Bearer {PUBLISH_TOKEN[:-1]}",
            f"Basic {PUBLISH_TOKEN}",
            f"Bearer{PUBLISH_TOKEN}",
            "Bearer",
            "Bearer ",
            f"Bearer {SUBSCRIBE_TOKEN}",
            "",
        ]
    ),
    _HEADER_TEXT.map(lambda junk: f"Bearer {junk}"),
    _HEADER_TEXT,
)


def _chunked(body: bytes, cuts: list[int]) -> bytes:
    points = [0, *sorted(cut % (len(body) + 1) for cut in cuts), len(body)]
    pieces = [body[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


@st.composite
def raw_publish(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A POST /api/events on the wire with odd headers and framing; and whether to half-close after it.

    The server must see EOF (we half-close) whenever the framing promises more than is sent, or it
    would wait for the rest; only then, as uvicorn drops a connection on EOF even mid-answer.
    """
    valid = st.builds(msgspec.json.encode, valid_events)
    padded = valid.map(lambda body: body + b" " * MAX_REQUEST_BYTES)  # valid, but over the limit
    body = draw(st.one_of(valid, valid, padded, damaged_bodies(), json_text.map(str.encode)))
    headers: list[tuple[str, str]] = [("Host", "127.0.0.1"), ("Connection", "close")]
    # Mostly the right headers, so that the odd one (or the framing) is what the server meets.
    if draw(_MOSTLY):
        headers.append(("Content-Type", draw(st.one_of(st.just("application/json"), _CONTENT_TYPE))))
    if not draw(_MOSTLY):
        headers.append(("Content-Encoding", draw(_ENCODING)))
    if draw(_MOSTLY):
        headers.append(("Authorization", draw(st.one_of(_GOOD_AUTHORIZATION, _GOOD_AUTHORIZATION, _AUTHORIZATION))))
    framing = draw(
        st.sampled_from(["length", "length", "length", "chunked", "chunked+length", "chunked-cut", "chunked-bad"])
    )
    half_close = False
    if framing.startswith("chunked"):
        headers.append(("Transfer-Encoding", "chunked"))
        wire = _chunked(body, draw(st.lists(st.integers(min_value=0), max_size=4)))
        if framing == "chunked+length":  # both: the request smuggling classic
            headers.append(("Content-Length", str(draw(st.integers(min_value=0, max_value=len(wire))))))
        elif framing == "chunked-cut":
            wire, half_close = wire[: draw(st.integers(min_value=0, max_value=len(wire) - 1))], True
        elif framing == "chunked-bad":
            size = draw(st.sampled_from(["zz", "-1", "0x10", " 5", "5;ext=1", "ffffffffffffffffffff", "fffffff", ""]))
            wire, half_close = size.encode() + wire[wire.index(b"\r\n") :], True
    else:
        wire = body
        length = draw(
            st.one_of(
                st.just(str(len(body))),
                st.integers(min_value=0, max_value=len(body) + 100).map(str),
                st.sampled_from(
                    [
                        "",
                        "-1",
                        "abc",
                        " 5",
                        "1e3",
                        "0x10",
                        "²",
                        "1²",
                        "+5",
                        "5, 5",
                        str(MAX_REQUEST_BYTES + 1),
                        str(2**64),
                        "9" * 40,
                    ]
                ),
                st.none(),  # no Content-Length: an HTTP/1.1 request without one has no body
            )
        )
        if length is not None:
            headers.append(("Content-Length", length))
    for name in draw(
        st.lists(st.sampled_from(["Content-Type", "Content-Length", "Authorization", "X-Junk"]), max_size=2)
    ):
        headers.append((name, draw(_HEADER_TEXT)))
    declared = [value.strip() for name, value in headers if name == "Content-Length"]
    half_close = half_close or any(value.isascii() and value.isdigit() and int(value) > len(wire) for value in declared)
    head = "".join(f"{name}: {value}\r\n" for name, value in draw(st.permutations(headers)))
    request = f"POST /api/events HTTP/1.1\r\n{head}\r\n".encode("latin-1") + wire
    return request, half_close


_QUERY_NAMES = st.sampled_from(["types", "source", "last_event_id", "token", "types[]", "TYPES", "x"])
_PERCENT_JUNK = st.sampled_from(
    ["%", "%z", "%zz", "%ff", "%ff%fe", "%00", "%C3%28", "%ED%A0%80", "+", "%2C", ",", "&", "="]
)
_QUERY_VALUE = st.one_of(
    _TYPE,
    _SOURCE,
    st.lists(_TYPE | _TEXT, max_size=5).map(",".join),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "9223372036854775807", "9223372036854775808", "1" * 25, "٣", "²", " 1", "1 ", ""]),
    st.just(SUBSCRIBE_TOKEN),
    st.text(max_size=30),
    st.just("A" * 5000),
)

_LAST_ID = st.integers(min_value=0, max_value=10_000).map(str)
_GOOD_QUERY_VALUES = {
    "types": st.lists(_TYPE, min_size=1, max_size=3).map(",".join),
    "source": st.lists(_SOURCE, min_size=1, max_size=3).map(",".join),
    "last_event_id": _LAST_ID,
}


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        name = draw(_QUERY_NAMES)
        value = draw(_QUERY_VALUE | _GOOD_QUERY_VALUES.get(name, _QUERY_VALUE))
        encoded = quote(value, safe="") if draw(st.booleans()) else quote(value, safe=",%&=+")
        if draw(st.integers(0, 3)) == 0:
            encoded += draw(_PERCENT_JUNK)
        pairs.append(f"{name}={encoded}")
    if draw(_MOSTLY):
        pairs.append(f"token={SUBSCRIBE_TOKEN}")
    return "&".join(draw(st.permutations(pairs)))


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


# --- the properties --------------------------------------------------------------------------


@pytest.mark.parametrize("examples", BUDGETS)
def test_any_json_document_is_answered_below_500_and_refusals_store_nothing(target: Target, examples: int) -> None:
    ledger = Ledger.open(target)

    @fuzz_settings(examples)
    @given(json_text)
    def check(text: str) -> None:
        ledger.post(text.encode("utf-8", "surrogatepass"))

    check()
    ledger.covered(202, 400, 422)
    ledger.settle()
    assert_healthy(target)


@pytest.mark.parametrize("examples", BUDGETS)
def test_valid_events_are_accepted_whole_and_mutated_ones_all_or_nothing(target: Target, examples: int) -> None:
    ledger = Ledger.open(target)

    @fuzz_settings(examples)
    @given(mutated_events())
    def check(case: tuple[list[Any], bool]) -> None:
        events, valid = case
        body = msgspec.json.encode(events[0] if len(events) == 1 and valid else events)
        response = ledger.post(body)
        if valid:
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] == len(events)
        elif response.status_code == 202:
            assert response.json()["accepted"] == len(events)

    check()
    ledger.covered(202, 413, 422)
    ledger.settle()
    assert_healthy(target)


@pytest.mark.parametrize("examples", BUDGETS)
def test_damaged_bytes_of_valid_bodies_are_answered_below_500(target: Target, examples: int) -> None:
    ledger = Ledger.open(target)

    @fuzz_settings(examples)
    @given(damaged_bodies())
    def check(body: bytes) -> None:
        ledger.post(body)

    check()
    ledger.covered(202, 400, 422)
    ledger.settle()
    assert_healthy(target)


@pytest.mark.parametrize("examples", BUDGETS)
def test_odd_headers_and_lengths_are_answered_below_500(target: Target, examples: int) -> None:
    ledger = Ledger.open(target)

    @fuzz_settings(examples)
    @given(raw_publish())
    def check(case: tuple[bytes, bool]) -> None:
        request, half_close = case
        before = target.emitted()
        status, raw = exchange(target.port, request, half_close=half_close)
        ledger.record(status, response_body(raw), before, request)

    check()
    ledger.covered(202, 400, 401, 413, 415)
    ledger.settle()
    assert_healthy(target)


@pytest.mark.parametrize("examples", BUDGETS)
def test_stream_query_strings_and_headers_are_answered_below_500(target: Target, examples: int) -> None:
    ledger = Ledger.open(target)

    @fuzz_settings(examples)
    @given(
        query_strings(),
        st.none() | _LAST_ID | _HEADER_TEXT | _QUERY_VALUE,
        st.none() | _AUTHORIZATION | _SUBSCRIBE_AUTH,
        st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "OPTIONS", "DELETE"]),
    )
    def check(query: str, last_event_id: str | None, authorization: str | None, method: str) -> None:
        head = "Host: 127.0.0.1\r\nConnection: close\r\nAccept: text/event-stream\r\n"
        # A line break in a value would end the header early: that fuzzes the HTTP parser, not us.
        if last_event_id is not None:
            head += f"Last-Event-ID: {_one_line(last_event_id)}\r\n"
        if authorization is not None:
            head += f"Authorization: {_one_line(authorization)}\r\n"
        request = f"{method} /events?{query} HTTP/1.1\r\n{head}\r\n".encode("latin-1", "replace")
        status, raw = exchange(target.port, request, head_only=True)
        assert status is not None, f"no answer to {request!r}"
        assert status < 500, f"{status} for {request!r:.2000}: {raw[:500]!r}"
        if status == 200:
            assert method in ("GET", "HEAD") and b"content-type: text/event-stream" in raw.lower()
        ledger.statuses[status] = ledger.statuses.get(status, 0) + 1

    check()
    ledger.covered(200, 400, 401, 405)
    # Fuzzing /events must not have published anything.
    assert target.emitted() == ledger.emitted_before
    ledger.settle()
    assert_healthy(target)
