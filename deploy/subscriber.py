#!/usr/bin/env python3
"""An example PLC/MES subscriber for `inspector run`: verdicts in sequence order, exactly once.

Needs only Python 3.8+ and pyzmq (pip install pyzmq); it does not import the inspector package,
so it runs on the PLC gateway or MES host as is. Message schema and protocol: docs/messages.md.

What it does:
- subscribes to <station>/ on the agent's PUB endpoint and prints one line per result;
- notices gaps in the sequence numbers (a missed message, a restart of this subscriber, a late
  start) and recovers the missing results from the agent's log endpoint ("since N"), so results
  are delivered in order; duplicates (a result seen live and recovered) are dropped;
- notices a missing tail from the heartbeat's last_seq, and a new agent log from its log_id;
- with --out FILE.jsonl, appends each delivered result as one JSON line and resumes from that
  file's last line after a restart (kill -9 included): every sequence number exactly once.

    python deploy/subscriber.py --connect tcp://line-pc:5556 --recovery tcp://line-pc:5557 \\
        --station line3 --out verdicts.jsonl

Exit status 0 (also on SIGINT/SIGTERM); a one-line summary goes to stderr as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import zmq


def log(event: str, **fields) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}), file=sys.stderr, flush=True)


class RecoveryClient:
    """REQ client with a timeout: a lost reply closes and reopens the socket (the "lazy pirate" pattern)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout_s: float):
        self.ctx, self.endpoint, self.timeout_ms = ctx, endpoint, int(timeout_s * 1000)
        self.sock = None

    def _open(self):
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        self.sock.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self.sock.connect(self.endpoint)

    def request(self, req: dict) -> dict | None:
        if self.sock is None:
            self._open()
        try:
            self.sock.send_string(json.dumps(req))
            reply = json.loads(self.sock.recv())
        except (zmq.Again, zmq.ZMQError, ValueError) as exc:
            log("recovery_unavailable", endpoint=self.endpoint, error=str(exc) or type(exc).__name__)
            self.sock.close()
            self.sock = None
            return None
        if not reply.get("ok"):
            log("recovery_refused", error=reply.get("error"))
            return None
        return reply

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class Output:
    """--out FILE.jsonl: one line per delivered result; its last complete line is where a restart resumes."""

    def __init__(self, path: str):
        self.path = path
        self.last_seq, self.log_id = self._resume()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _resume(self) -> tuple[int | None, str | None]:
        if not os.path.exists(self.path):
            return None, None
        size = os.path.getsize(self.path)
        with open(self.path, "rb+") as f:
            f.seek(max(0, size - 65536))
            tail = f.read()
            if tail and not tail.endswith(b"\n"):  # killed mid-write: drop the partial line
                cut = tail.rfind(b"\n") + 1
                f.truncate(size - (len(tail) - cut))
                log("output_truncated_partial_line", path=self.path, bytes=len(tail) - cut)
                tail = tail[:cut]
        for line in reversed(tail.splitlines()):
            try:
                msg = json.loads(line)
                return int(msg["seq"]), msg.get("log_id")
            except (ValueError, KeyError, TypeError):
                continue
        return None, None

    def write(self, msg: dict) -> None:
        os.write(self.fd, (json.dumps(msg, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)


class Subscriber:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 100_000)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt_string(zmq.SUBSCRIBE, f"{args.station}/" if args.station else "")
        self.sub.connect(args.connect)
        self.recovery = RecoveryClient(self.ctx, args.recovery, args.timeout)
        self.out = Output(args.out) if args.out else None
        self.last: int | None = None  # last delivered sequence number
        self.log_id: str | None = None
        if self.out is not None:
            self.last, self.log_id = self.out.last_seq, self.out.log_id
        elif args.state and os.path.exists(args.state):
            with open(args.state) as f:
                state = json.load(f)
            self.last, self.log_id = state.get("last_seq"), state.get("log_id")
        if self.last is None and args.from_start:
            self.last = 0
        self.pending: dict[int, dict] = {}  # results received ahead of a gap
        self.counts = {"delivered": 0, "duplicates": 0, "gaps": 0, "recovered": 0, "lost": 0}
        self.need_recovery = self.last is not None  # catch up at once after a restart
        self.next_retry = 0.0
        self.last_message = time.monotonic()
        self.last_state_write = 0.0
        self.running = True

    # ------------------------------------------------------------------ delivery
    def deliver(self, msg: dict, recovered: bool = False) -> None:
        self.last = msg["seq"]
        self.log_id = msg.get("log_id", self.log_id)
        self.counts["delivered"] += 1
        self.counts["recovered"] += recovered
        if self.out is not None:
            self.out.write(msg)
        if not self.args.quiet:
            score = "" if msg.get("score") is None else f" score={msg['score']:.5f} ratio={msg['ratio']:.3f}"
            err = f" error={msg['error']}" if msg.get("error") else ""
            tag = " (recovered)" if recovered else ""
            print(f"{msg['seq']:>8} {msg['station']}/{msg['source']} {msg['frame_id']} {msg['verdict'].upper()}"
                  f"{score}{err}{tag}", flush=True)

    def drain_pending(self) -> None:
        while self.pending:
            lowest = min(self.pending)
            if lowest <= self.last:
                self.pending.pop(lowest)
                self.counts["duplicates"] += 1
            elif lowest == self.last + 1:
                self.deliver(self.pending.pop(lowest))
            else:
                return

    def on_result(self, msg: dict) -> None:
        if self.log_id is not None and msg.get("log_id") not in (None, self.log_id):
            self.new_log(msg["log_id"])
        seq = msg["seq"]
        if self.last is None:
            self.last = seq - 1  # joining now: start with this result
        if seq <= self.last or seq in self.pending:
            self.counts["duplicates"] += 1
            return
        if seq == self.last + 1:
            self.deliver(msg)
            self.drain_pending()
            return
        if not self.pending:
            self.counts["gaps"] += 1
            log("gap", expected=self.last + 1, got=seq)
        self.pending[seq] = msg
        self.need_recovery = True
        self.recover()

    def on_heartbeat(self, msg: dict) -> None:
        if self.log_id is not None and msg.get("log_id") not in (None, "", self.log_id):
            self.new_log(msg["log_id"])
        if self.last is not None and msg.get("last_seq", 0) > self.last and not self.pending:
            self.counts["gaps"] += 1  # results were published that never arrived (a missing tail)
            log("gap", expected=self.last + 1, heartbeat_last_seq=msg["last_seq"])
            self.need_recovery = True

    def on_event(self, msg: dict) -> None:
        if not self.args.quiet:
            print(f"   event {msg.get('station')}/{msg.get('source')} {msg.get('event')}: {msg.get('detail', '')}", flush=True)
        if msg.get("event") == "stopping" and self.last is not None and msg.get("last_seq", 0) > self.last:
            self.need_recovery = True

    def new_log(self, log_id: str) -> None:
        log("new_agent_log", old=self.log_id, new=log_id, last_seq=self.last)
        self.log_id, self.last = log_id, 0
        self.pending.clear()
        self.need_recovery = True

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """Fetch everything after the last delivered result from the log endpoint, in pages."""
        if self.last is None or time.monotonic() < self.next_retry:
            return
        while self.running:
            reply = self.recovery.request({"cmd": "since", "seq": self.last, "limit": self.args.page})
            if reply is None:
                self.next_retry = time.monotonic() + 1.0  # agent unreachable: try again later
                return
            if self.log_id is not None and reply.get("log_id") not in (None, self.log_id):
                self.new_log(reply["log_id"])
                continue
            if reply.get("lost"):
                first, last = reply["lost"]
                self.counts["lost"] += last - first + 1
                log("lost", first=first, last=last, reason="pruned from the agent's log")
                self.last = max(self.last, last)
            for msg in reply["results"]:
                if msg["seq"] > self.last:
                    self.pending.pop(msg["seq"], None)
                    self.deliver(msg, recovered=True)
            if not reply.get("more"):
                break
        self.drain_pending()
        if self.pending:  # the log has nothing for this gap: it cannot be recovered
            lowest = min(self.pending)
            self.counts["lost"] += lowest - self.last - 1
            log("lost", first=self.last + 1, last=lowest - 1, reason="not in the agent's log")
            self.last = lowest - 1
            self.drain_pending()
        self.need_recovery = False

    # ------------------------------------------------------------------ main loop
    def done(self) -> bool:
        a = self.args
        if a.until_seq is not None and self.last is not None and self.last >= a.until_seq:
            return True
        return a.idle_exit is not None and time.monotonic() - self.last_message > a.idle_exit and not self.pending

    def save_state(self, force: bool = False) -> None:
        if not self.args.state or self.last is None:
            return
        if not force and time.monotonic() - self.last_state_write < 0.5:
            return
        tmp = self.args.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"last_seq": self.last, "log_id": self.log_id}, f)
        os.replace(tmp, self.args.state)
        self.last_state_write = time.monotonic()

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        try:
            while self.running and not self.done():
                if self.need_recovery:
                    self.recover()
                if dict(poller.poll(200)).get(self.sub):
                    while True:
                        try:
                            topic, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.last_message = time.monotonic()
                        self.dispatch(topic.decode(), payload)
                        if self.done():
                            break
                self.save_state()
        finally:
            self.save_state(force=True)
            log("summary", last_seq=self.last, **self.counts)
            if self.out is not None:
                self.out.close()
            self.recovery.close()
            self.sub.close()
            self.ctx.term()
        return 0

    def dispatch(self, topic: str, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            log("bad_message", topic=topic)
            return
        if topic.endswith("/result"):
            self.on_result(msg)
        elif topic.endswith("/heartbeat"):
            self.on_heartbeat(msg)
        elif topic.endswith("/event"):
            self.on_event(msg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connect", default="tcp://127.0.0.1:5556", help="the agent's PUB endpoint")
    p.add_argument("--recovery", default="tcp://127.0.0.1:5557", help="the agent's recovery endpoint")
    p.add_argument("--station", default="", help="only this station's messages (default: all)")
    p.add_argument("--out", help="append delivered results to this JSONL file and resume from it")
    p.add_argument("--state", help="without --out: a file keeping the last delivered sequence number")
    p.add_argument("--from-start", action="store_true", help="with no saved position: start at sequence 1, not now")
    p.add_argument("--until-seq", type=int, help="exit once this sequence number is delivered")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds without a message")
    p.add_argument("--timeout", type=float, default=2.0, help="recovery request timeout, seconds")
    p.add_argument("--page", type=int, default=1000, help="results per recovery request")
    p.add_argument("--quiet", action="store_true", help="do not print verdicts")
    args = p.parse_args(argv)
    sub = Subscriber(args)

    def stop(_signum, _frame):
        sub.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return sub.run()


if __name__ == "__main__":
    sys.exit(main())
