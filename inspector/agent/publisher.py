"""The publisher: the one thread that owns the PUB socket and writes the durable log.

It takes results in frame order, gives each the next sequence number, appends them to the log
(one transaction per batch), then sends them as [topic, JSON]; events likewise; and a heartbeat
every heartbeat_s. Logged before published: whatever a subscriber saw, the log can replay.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable

import zmq

from ..errors import ConfigError
from .channel import Channel, Closed
from .jsonlog import log
from .messages import Event, Heartbeat, Result, event_topic, heartbeat_topic, result_topic
from .owner_thread import SocketOwnerThread
from .resultlog import ResultLog
from .stats import Stats

SNDHWM = 100_000  # messages queued per subscriber before PUB drops for it (recovery covers drops)


def bind(sock: zmq.Socket, endpoint: str, key: str) -> str:
    """Bind or raise a ConfigError naming the key; returns the bound endpoint (the real port for tcp://...:*)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"{key}: cannot bind {endpoint} ({exc.strerror})") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class Publisher(SocketOwnerThread):
    """start() opens the log and binds the PUB socket in the owning thread."""

    def __init__(self, ctx: zmq.Context, endpoint: str, log_path: str, log_sync: str, log_retain: int,
                 station: str, source: str, heartbeat_s: float, heartbeat: Callable[[], Heartbeat], stats: Stats):
        super().__init__("publisher")
        self.ctx = ctx
        self.endpoint = endpoint
        self.log_path = log_path
        self.log_sync = log_sync
        self.log_retain = log_retain
        self.result_topic = result_topic(station, source).encode()
        self.event_topic = event_topic(station, source).encode()
        self.heartbeat_topic = heartbeat_topic(station).encode()
        self.heartbeat_s = heartbeat_s
        self.heartbeat = heartbeat
        self.stats = stats
        self.inbox = Channel(name="publisher")  # bounded upstream by the in-flight batch limit
        self.log_id = ""
        self.last_seq = 0
        self.heartbeats = 0

    def send_results(self, results: list[Result], done: Callable[[], None] | None = None) -> None:
        """Queue results (in order) for publishing; `done` is called once they are logged and sent."""
        self.inbox.put(("results", (results, done)))

    def send_event(self, event: Event) -> None:
        if not self.inbox.closed:
            self.inbox.put(("event", event))

    def close(self, timeout: float | None = None) -> None:
        """Publish everything still queued, then close the socket and the log."""
        self.inbox.close()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            rlog = ResultLog(self.log_path, sync=self.log_sync, retain=self.log_retain)
            self.log_id, self.last_seq = rlog.log_id, rlog.last_seq
            sock = self.ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.SNDHWM, SNDHWM)
            sock.setsockopt(zmq.LINGER, 2000)
            bound = bind(sock, self.endpoint, "publish")
        except BaseException as exc:  # reported to start()'s caller
            self._set_up(error=exc)
            return
        self._set_up(bound)
        next_hb = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= next_hb:
                    self._heartbeat(sock)
                    next_hb = max(next_hb + self.heartbeat_s, now)
                try:
                    kind, item = self.inbox.get(timeout=max(0.0, next_hb - time.monotonic()))
                except TimeoutError:
                    continue
                except Closed:
                    break
                if kind == "results":
                    results, done = item
                    self._results(sock, rlog, results)
                    if done is not None:
                        done()
                else:
                    self._event(sock, rlog, item)
            self._heartbeat(sock)
        finally:
            sock.close()
            rlog.close()

    def _results(self, sock: zmq.Socket, rlog: ResultLog, results: list[Result]) -> None:
        ts = time.time()
        rows = []
        for r in results:
            self.last_seq += 1
            r.seq, r.log_id, r.publish_ts = self.last_seq, self.log_id, ts
            r.latency_ms["post"] = max(0.0, (ts - r.done_ts) * 1e3) if r.done_ts else 0.0
            r.latency_ms["total"] = max(0.0, (ts - r.capture_ts) * 1e3)
            rows.append((r.seq, ts, r.frame_id, r.verdict, r.to_json()))
        try:
            rlog.append(rows)
        except sqlite3.Error as exc:
            log.error("result_log_write_failed", path=self.log_path, error=str(exc), first_seq=rows[0][0], count=len(rows))
        for r, row in zip(results, rows):
            sock.send_multipart([self.result_topic, row[4].encode()])
            self.stats.published_one(r.verdict, ts)

    def _event(self, sock: zmq.Socket, rlog: ResultLog, event: Event) -> None:
        event.fields.setdefault("last_seq", self.last_seq)
        payload = event.to_json()
        try:
            rlog.append_event(event.ts, payload)
        except sqlite3.Error as exc:
            log.error("result_log_write_failed", path=self.log_path, error=str(exc), event=event.event)
        sock.send_multipart([self.event_topic, payload.encode()])

    def _heartbeat(self, sock: zmq.Socket) -> None:
        hb = self.heartbeat()
        hb.last_seq, hb.log_id = self.last_seq, self.log_id
        sock.send_multipart([self.heartbeat_topic, hb.to_json().encode()])
        self.heartbeats += 1
