"""The agent's messages: versioned, documented in docs/messages.md. Each is a flat JSON object.

Topics (ZeroMQ multipart [topic, JSON], UTF-8):
    <station>/<source>/result   one per frame, in frame order, seq + 1 each
    <station>/<source>/event    source outages and recoveries, start and stop
    <station>/heartbeat         every heartbeat_s
A subscriber to the prefix "<station>/" gets all three.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

RESULT_SCHEMA = "inspector.result/1"
HEARTBEAT_SCHEMA = "inspector.heartbeat/1"
EVENT_SCHEMA = "inspector.event/1"
REPLY_SCHEMA = "inspector.reply/1"

VERDICTS = ("pass", "fail", "error")
LATENCY_STAGES = ("read", "queue", "preprocess", "infer", "post", "total")
EVENTS = ("started", "source_down", "source_up", "source_ended", "stopping")


def result_topic(station: str, source: str) -> str:
    return f"{station}/{source}/result"


def event_topic(station: str, source: str) -> str:
    return f"{station}/{source}/event"


def heartbeat_topic(station: str) -> str:
    return f"{station}/heartbeat"


def _num(x: float | None, digits: int = 7) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


@dataclass
class Result:
    station: str
    source: str
    frame_id: str
    capture_ts: float  # seconds since the Unix epoch (UTC): when the frame was grabbed / the file was read
    verdict: str  # pass | fail | error
    score: float | None  # None for an error
    threshold: float
    error: str | None
    latency_ms: dict[str, float]
    model_id: str
    tiles: int = 1
    map: dict[str, Any] | None = None  # publish_map: {"h", "w", "origin": [x, y], "cell": [w, h], "data": [row-major]}
    max_tile: list[int] | None = None  # tiled frames: [x, y, w, h] of the highest-scoring tile, in frame pixels
    done_ts: float = 0.0  # when inference finished (not published; for the "post" latency)
    # Filled in by the publisher, in order:
    seq: int = 0
    log_id: str = ""
    publish_ts: float = 0.0
    schema: str = RESULT_SCHEMA

    @property
    def ratio(self) -> float | None:
        return None if self.score is None else self.score / self.threshold

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": self.schema,
            "station": self.station,
            "source": self.source,
            "seq": self.seq,
            "log_id": self.log_id,
            "frame_id": self.frame_id,
            "capture_ts": round(self.capture_ts, 6),
            "publish_ts": round(self.publish_ts, 6),
            "verdict": self.verdict,
            "score": _num(self.score, 9),
            "threshold": _num(self.threshold, 9),
            "ratio": _num(self.ratio, 6),
            "error": self.error,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "model_id": self.model_id,
            "tiles": self.tiles,
        }
        if self.max_tile is not None:
            out["max_tile"] = self.max_tile
        if self.map is not None:
            out["map"] = self.map
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass
class Heartbeat:
    station: str
    source: str
    ts: float
    run_id: str
    log_id: str
    state: str  # starting | running | draining | stopping
    uptime_s: float
    fps: float  # results published per second over the last few seconds
    frames_in: int  # frames accepted from the source
    published: int  # results published by this run
    errors: int  # error results by this run
    dropped: int  # frames the source produced that were never accepted (live sources keep only the newest)
    queue_depth: int  # frames accepted and not yet published
    queues: dict[str, int]  # per stage: frames (read, waiting), batches (in flight)
    last_seq: int  # newest sequence number in the log
    source_state: str  # starting | up | down | ended
    source_retry_s: float  # while down: the current backoff delay before the next attempt; 0 when up
    source_attempts: int  # while down: failed attempts in this outage
    reconnects: int
    backend: str
    model_id: str
    threshold: float
    batch: int
    rss_mb: float
    schema: str = HEARTBEAT_SCHEMA

    def to_json(self) -> str:
        d = {"schema": self.schema, **{k: v for k, v in asdict(self).items() if k != "schema"}}
        d["uptime_s"] = round(d["uptime_s"], 3)
        d["fps"] = round(d["fps"], 3)
        d["ts"] = round(d["ts"], 6)
        d["rss_mb"] = round(d["rss_mb"], 1)
        return json.dumps(d, separators=(",", ":"))


@dataclass
class Event:
    station: str
    source: str
    ts: float
    event: str  # one of EVENTS
    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # event-specific, e.g. down_s, retry_in_s, last_seq
    schema: str = EVENT_SCHEMA

    def to_json(self) -> str:
        d = {"schema": self.schema, "station": self.station, "source": self.source, "ts": round(self.ts, 6),
             "event": self.event, "detail": self.detail}
        d.update(self.fields)
        return json.dumps(d, separators=(",", ":"), default=str)
