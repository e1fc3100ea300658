"""The recovery endpoint: a ZeroMQ ROUTER socket answering from the durable log. Protocol: docs/messages.md.

Requests (one frame; REQ clients, or DEALER clients that send an empty delimiter frame first):
    {"cmd": "since", "seq": N, "limit": L}    results with sequence > N, oldest first (L <= 10000)
    {"cmd": "status"}                         the agent's state, the log's bounds, recent events
    since N / status                          the same, as plain text
Every reply is one JSON object with "schema": "inspector.reply/1" and "ok"; errors have "error".
One thread owns the socket and its own read connection to the log.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

import zmq

from .jsonlog import log
from .messages import REPLY_SCHEMA
from .owner_thread import SocketOwnerThread
from .resultlog import LogReader

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000


def parse_request(body: bytes) -> dict[str, Any]:
    """bytes -> {"cmd": ..., ...}; raises ValueError with a one-line reason."""
    text = body.decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            req = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"request is not valid JSON ({exc.msg})") from None
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise ValueError('request must be a JSON object with a "cmd" string')
        return req
    parts = text.split()
    if not parts:
        raise ValueError("empty request")
    if parts[0] == "since" and len(parts) in (2, 3):
        try:
            req = {"cmd": "since", "seq": int(parts[1])}
            if len(parts) == 3:
                req["limit"] = int(parts[2])
            return req
        except ValueError:
            raise ValueError(f"since: expected integers, got {text!r}") from None
    if parts == ["status"]:
        return {"cmd": "status"}
    raise ValueError(f"unknown request {text[:60]!r} (expected 'since N' or 'status')")


class RecoveryServer(SocketOwnerThread):
    """start() binds the ROUTER socket in the owning thread and serves until stop()."""

    def __init__(self, ctx: zmq.Context, endpoint: str, log_path: str, status: Callable[[], dict[str, Any]]):
        super().__init__("recovery")
        self.ctx = ctx
        self.endpoint = endpoint
        self.log_path = log_path
        self.status = status
        self.requests = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        from .publisher import bind

        try:
            sock = self.ctx.socket(zmq.ROUTER)
            sock.setsockopt(zmq.LINGER, 500)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
            bound = bind(sock, self.endpoint, "recovery")
            reader = LogReader(self.log_path)
        except BaseException as exc:  # reported to start()'s caller
            self._set_up(error=exc)
            return
        self._set_up(bound)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    continue
                frames = sock.recv_multipart()
                try:
                    split = frames.index(b"")
                    envelope, body = frames[: split + 1], b"".join(frames[split + 1 :])
                except ValueError:  # a DEALER without the delimiter: identity, body
                    envelope, body = frames[:1], b"".join(frames[1:])
                sock.send_multipart(envelope + [self.answer(reader, body).encode()])
        finally:
            reader.close()
            sock.close()

    def answer(self, reader: LogReader, body: bytes) -> str:
        self.requests += 1
        try:
            req = parse_request(body)
            cmd = req["cmd"]
            if cmd == "since":
                return self._since(reader, req)
            if cmd == "status":
                first, last, count = reader.bounds()
                status = dict(self.status())
                status.update({"log": {"log_id": reader.log_id, "first_seq": first, "last_seq": last, "results": count,
                                       "path": self.log_path},
                               "events": [json.loads(e) for e in reader.events()]})
                return json.dumps({"schema": REPLY_SCHEMA, "ok": True, "cmd": "status", "status": status})
            raise ValueError(f"unknown cmd {cmd!r} (expected since or status)")
        except (ValueError, TypeError) as exc:
            log.warning("recovery_bad_request", error=str(exc))
            return json.dumps({"schema": REPLY_SCHEMA, "ok": False, "error": str(exc)})
        except Exception as exc:  # e.g. the log is unreadable right now: answer, and keep serving
            log.error("recovery_failed", error=f"{type(exc).__name__}: {exc}")
            return json.dumps({"schema": REPLY_SCHEMA, "ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"})

    def _since(self, reader: LogReader, req: dict[str, Any]) -> str:
        seq, limit = req.get("seq"), req.get("limit", DEFAULT_LIMIT)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"since: seq must be an integer >= 0, got {seq!r}")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"since: limit must be an integer in [1, {MAX_LIMIT}], got {limit!r}")
        first, last, _ = reader.bounds()
        rows = reader.since(seq, limit)
        payloads = [p for _, p in rows]
        head = {"schema": REPLY_SCHEMA, "ok": True, "cmd": "since", "seq": seq, "log_id": reader.log_id,
                "first_seq": first, "last_seq": last, "count": len(payloads),
                "more": bool(rows) and rows[-1][0] < last,
                "lost": [seq + 1, first - 1] if first and seq + 1 < first else None}
        # The stored payloads are spliced in verbatim: recovered results are byte-identical to published ones.
        text = json.dumps(head)
        return text[:-1] + ', "results": [' + ",".join(payloads) + "]}"
