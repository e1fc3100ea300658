"""Helpers for the agent tests: real ZeroMQ sockets on loopback, real files, real videos. No mocks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from inspector.agent.agent import Agent
from inspector.agent.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
SUBSCRIBER = REPO / "deploy" / "subscriber.py"
INSPECTOR = Path(sys.executable).with_name("inspector")


@pytest.fixture(scope="session")
def agent_model(request) -> Path:
    """The session's trained model (conftest `model_path`); INSPECTOR_AGENT_MODEL=FILE.onnx reuses an existing one."""
    env = os.environ.get("INSPECTOR_AGENT_MODEL")
    if env:
        return Path(env)
    return request.getfixturevalue("model_path")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp_path: Path, model: Path, **kw) -> RunConfig:
    """A RunConfig on loopback with random ports, a log in tmp_path, quick heartbeats and no linger.
    `model` is an .onnx (model:) or a .plan (engine:)."""
    key = "engine" if Path(model).suffix == ".plan" else "model"
    base = dict(publish="tcp://127.0.0.1:*", recovery="tcp://127.0.0.1:*",
                log_db=str(tmp_path / "results.db"), heartbeat_s=0.2, linger_s=0.0, station="t")
    base[key] = str(model)
    base.update(kw)
    cfg = RunConfig(**base)
    cfg.validate("test")
    return cfg


class Collector:
    """A SUB socket in its own thread, keeping every (topic, message) it receives."""

    def __init__(self, endpoint: str, prefix: str = ""):
        self.endpoint = endpoint
        self.prefix = prefix
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt_string(zmq.SUBSCRIBE, self.prefix)
        sock.connect(self.endpoint)
        while not self._stop.is_set():
            if sock.poll(50):
                topic, payload = sock.recv_multipart()
                with self._lock:
                    self.messages.append((topic.decode(), json.loads(payload)))
        sock.close()

    def of(self, suffix: str) -> list[dict]:
        with self._lock:
            return [m for t, m in self.messages if t.endswith(suffix)]

    @property
    def results(self) -> list[dict]:
        return self.of("/result")

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._ctx.term()


def open_agent(cfg: RunConfig) -> tuple[Agent, Collector]:
    """Open the agent (sockets bound, heartbeats on), connect a Collector and wait until it hears a heartbeat."""
    agent = Agent(cfg).open()
    col = Collector(agent.endpoints["publish"])
    if not col.wait_for(lambda c: c.of("/heartbeat"), timeout=10):
        agent.close(linger=False)
        col.close()
        raise AssertionError("no heartbeat from the agent within 10 s")
    return agent, col


def run_agent(cfg: RunConfig, timeout: float = 60.0) -> tuple[dict, Collector, Agent]:
    """A whole run to the end of its source; returns (summary, collector, agent). The collector is still open."""
    agent, col = open_agent(cfg)
    try:
        agent.start()
        assert agent.wait(timeout), "the agent did not finish in time"
    finally:
        summary = agent.close()
    col.wait_for(lambda c: c.of("/heartbeat") and c.of("/event") and
                 any(e["event"] == "stopping" for e in c.of("/event")), timeout=5)
    return summary, col, agent


def request(endpoint: str, req: dict | str, timeout_s: float = 5.0) -> dict:
    """One REQ/REP round trip to the recovery endpoint."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.connect(endpoint)
    try:
        sock.send_string(req if isinstance(req, str) else json.dumps(req))
        return json.loads(sock.recv())
    finally:
        sock.close()
        ctx.term()


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """A real MJPG .avi through OpenCV's VideoWriter."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def image_frames(folder: Path, n: int, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    from inspector.images import read_image

    files = sorted(p for p in folder.iterdir() if p.suffix == ".png")[:n]
    frames = [read_image(p) for p in files]
    return [cv2.resize(f, size) for f in frames] if size else frames


def link_images(src: Path, dst: Path, n: int | None = None) -> list[Path]:
    """Symlinks to real data images (never copies into the repository)."""
    dst.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:n]
    out = []
    for f in files:
        link = dst / f.name
        os.symlink(f, link)
        out.append(link)
    return out


def spawn(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO), **kw)


class TcpRelay:
    """A TCP forwarder between a subscriber and the agent's PUB port, whose link can be cut: a network
    outage, made of real sockets. While cut, connections are closed and refused, so the PUB socket has
    no peer and drops what it publishes; ZeroMQ on the subscriber side reconnects by itself afterwards."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._up.wait(0.05):
                continue
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", self.port))
            srv.listen(4)
            srv.settimeout(0.05)
            while self._up.is_set() and not self._stop.is_set():
                try:
                    down, _ = srv.accept()
                except socket.timeout:
                    continue
                up = socket.create_connection(self.upstream)
                with self._lock:
                    self._conns += [down, up]
                for a, b in ((down, up), (up, down)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            srv.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every connection and refuse new ones until restore()."""
        self._up.clear()
        self.cuts += 1
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=5)
