"""Whole processes: `inspector run` stopped by a signal, and deploy/subscriber.py recovering its gaps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time

import pytest

from agentkit import (INSPECTOR, SUBSCRIBER, Collector, TcpRelay, agent_model, config, free_port, image_frames,
                      link_images, open_agent, spawn, write_video)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_publishes_everything_and_exits_0(agent_model, piped, tmp_path, sig):
    folder = tmp_path / "in"
    folder.mkdir()
    port, rport = free_port(), free_port()
    (tmp_path / "run.yaml").write_text("batch: 1\nqueue_size: 8\nin_flight: 2\nheartbeat_s: 0.2\nlinger_s: 0.5\n")
    col = Collector(f"tcp://127.0.0.1:{port}")
    proc = spawn([str(INSPECTOR), "run", "--folder", str(folder), "--watch", "--model", str(agent_model),
                  "--config", str(tmp_path / "run.yaml"), "--publish", f"tcp://127.0.0.1:{port}",
                  "--recovery", f"tcp://127.0.0.1:{rport}", "--log-db", str(tmp_path / "r.db"), "--station", "p"])
    try:
        assert col.wait_for(lambda c: c.of("/heartbeat"), timeout=60), "no heartbeat from the agent"
        link_images(piped / "test" / "defect", folder, 24)  # now that the subscription is surely in place
        assert col.wait_for(lambda c: len(c.results) >= 1, timeout=60), "no result from the agent"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "signal_received" and e["signal"] == sig.name for e in logs)
    stopped = [e for e in logs if e["event"] == "stopped"][-1]
    assert stopped["published"] == stopped["frames_in"] and stopped["reason"] == f"{sig.name} received"
    assert "Traceback" not in err
    col.wait_for(lambda c: len(c.results) >= stopped["published"], timeout=5)
    col.close()
    names = sorted(p.name for p in folder.iterdir())
    res = col.results
    assert len(res) == stopped["published"] and 1 <= len(res) < 24
    assert [r["frame_id"] for r in res] == names[: len(res)]
    assert [r["seq"] for r in res] == list(range(1, len(res) + 1))
    with sqlite3.connect(tmp_path / "r.db") as con:
        assert con.execute("SELECT COUNT(*), MAX(seq) FROM results").fetchone() == (len(res), len(res))
    assert f"published {len(res)} results" in out
    assert any(e["event"] == "stopping" for e in col.of("/event"))


def read_out(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_lines(path, n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while len(read_out(path)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(read_out(path))


def test_subscriber_recovers_gaps_from_the_log(agent_model, piped, tmp_path):
    """deploy/subscriber.py as a real process: it starts late, loses its network link for a while (so
    ZeroMQ drops what is published meanwhile), is killed with SIGKILL and restarted; it still ends
    with every sequence number exactly once."""
    frames = image_frames(piped / "test" / "defect", 8)
    video = write_video(tmp_path / "loop.avi", frames, fps=25)
    total = 100
    cfg = config(tmp_path, agent_model, video=str(video), loop=True, fast=True, max_frames=total, batch=2,
                 linger_s=4.0, station="plc", heartbeat_s=0.2)
    out = tmp_path / "verdicts.jsonl"
    agent, col = open_agent(cfg)
    pub, rec = agent.endpoints["publish"], agent.endpoints["recovery"]
    relay = TcpRelay(int(pub.rsplit(":", 1)[1]))
    args = [sys.executable, str(SUBSCRIBER), "--connect", f"tcp://127.0.0.1:{relay.port}", "--recovery", rec,
            "--station", "plc", "--out", str(out), "--from-start", "--quiet", "--timeout", "1"]
    subs = []
    try:
        agent.start()
        assert col.wait_for(lambda c: len(c.results) >= 8, timeout=60)
        subs.append(spawn(args))  # 1. joins late: the first results were published before it existed
        assert wait_lines(out, 12) >= 12
        at_cut = len(read_out(out))
        relay.cut()  # 2. the network link goes down: PUB has no peer and drops these results
        n = len(col.results)
        assert col.wait_for(lambda c: len(c.results) >= n + 12, timeout=60)
        relay.restore()
        assert wait_lines(out, n + 16) >= n + 16  # back, gap noticed live and recovered
        subs[0].send_signal(signal.SIGKILL)  # 3. killed without warning, mid-stream
        subs[0].wait(10)
        killed_at = len(read_out(out))
        assert killed_at < total
        assert col.wait_for(lambda c: len(c.results) >= min(total, killed_at + 10), timeout=60)  # it misses these
        subs.append(spawn(args + ["--until-seq", str(total)]))  # 4. restarted: resumes from its output file
        assert agent.wait(120)
        summary = agent.close()  # lingers 4 s: the restarted subscriber catches up meanwhile
        _, err = subs[1].communicate(timeout=30)
        err0 = subs[0].stderr.read()
    finally:
        for p in subs:
            if p.poll() is None:
                p.kill()
        col.close()
        relay.close()
    assert subs[1].returncode == 0, err
    assert summary["published"] == total
    got = read_out(out)
    assert [r["seq"] for r in got] == list(range(1, total + 1))  # every sequence number exactly once, in order
    assert [r["frame_id"] for r in got] == [str(i) for i in range(total)]
    gaps = [json.loads(line) for line in err0.splitlines() if '"gap"' in line]
    assert any(g["expected"] > at_cut for g in gaps), err0  # the cut's gap, noticed live
    report = [json.loads(line) for line in err.splitlines() if '"summary"' in line][-1]
    assert report["recovered"] >= 10 and report["lost"] == 0
    with sqlite3.connect(tmp_path / "results.db") as con:
        logged = [json.loads(p) for (p,) in con.execute("SELECT payload FROM results ORDER BY seq")]
    assert got == logged
