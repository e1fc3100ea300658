"""The agent on videos (real MJPG files from OpenCV's VideoWriter) and on cameras/live sources that fail."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from agentkit import agent_model, config, image_frames, open_agent, run_agent, write_video
from inspector.backends import open_backend
from inspector.preprocess import prepare


@pytest.fixture(scope="module")
def frames(piped):
    return image_frames(piped / "test" / "defect", 6) + image_frames(piped / "test" / "good", 4)


def decoded(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def test_video_run_scores_every_frame_in_order(agent_model, frames, tmp_path):
    video = write_video(tmp_path / "line.avi", frames, fps=25)
    summary, col, _ = run_agent(config(tmp_path, agent_model, video=str(video), fast=True, batch=4))
    col.close()
    res = col.results
    assert [r["frame_id"] for r in res] == [str(i) for i in range(len(frames))]
    assert [r["seq"] for r in res] == list(range(1, len(frames) + 1))
    assert res[0]["source"] == "line" and summary["dropped"] == 0
    with open_backend(agent_model) as be:
        ref, _ = be.infer(np.stack([prepare(f, be.meta.preprocess) for f in decoded(video)]))
    np.testing.assert_allclose([r["score"] for r in res], ref, rtol=0, atol=1e-6)


def test_video_plays_at_its_native_rate_unless_fast(agent_model, frames, tmp_path):
    video = write_video(tmp_path / "slow.avi", frames[:6], fps=4)
    _, col, _ = run_agent(config(tmp_path, agent_model, video=str(video)))
    paced = [r["capture_ts"] for r in col.results]
    col.close()
    assert len(paced) == 6 and paced[-1] - paced[0] >= 5 / 4 * 0.9  # 6 frames at 4 fps: 1.25 s
    _, col, _ = run_agent(config(tmp_path, agent_model, video=str(video), fast=True, log_db=str(tmp_path / "b.db")))
    fast = [r["capture_ts"] for r in col.results]
    col.close()
    assert len(fast) == 6 and fast[-1] - fast[0] < 5 / 4 * 0.5


def test_looping_video_with_max_frames(agent_model, frames, tmp_path):
    video = write_video(tmp_path / "loop.avi", frames[:4], fps=25)
    summary, col, _ = run_agent(config(tmp_path, agent_model, video=str(video), fast=True, loop=True, max_frames=10))
    col.close()
    res = col.results
    assert [r["frame_id"] for r in res] == [str(i) for i in range(10)]
    assert summary["reason"] == "max_frames 10 reached" and summary["published"] == 10
    scores = [r["score"] for r in res]
    assert scores[4:8] == pytest.approx(scores[0:4], abs=1e-6)  # the second pass is the same frames


def test_missing_camera_is_an_outage_with_backoff_not_a_crash(agent_model, tmp_path):
    cfg = config(tmp_path, agent_model, camera=97, duration=2.5, reconnect_min_s=0.2, reconnect_max_s=0.8,
                 heartbeat_s=0.1)
    summary, col, _ = run_agent(cfg)
    col.close()
    assert summary["published"] == 0 and summary["frames_in"] == 0
    downs = [e for e in col.of("/event") if e["event"] == "source_down"]
    assert len(downs) == 1 and "cam" in downs[0]["source"] and "cannot open camera 97" in downs[0]["detail"]
    beats = [h for h in col.of("/heartbeat") if h["source_state"] == "down"]
    assert beats and all(h["source"] == "cam97" for h in beats)
    delays = sorted({h["source_retry_s"] for h in beats})
    assert delays[0] == pytest.approx(0.2) and 0.4 in [pytest.approx(d) for d in delays]
    assert max(delays) == pytest.approx(0.8)  # doubled, then capped at reconnect_max_s
    assert max(h["source_attempts"] for h in beats) >= 4
    assert summary["reason"] == "duration 2.5 s reached"


def test_live_source_that_disappears_reconnects_and_reports_the_outage(agent_model, frames, tmp_path):
    video = write_video(tmp_path / "cam.avi", frames * 2, fps=100)
    away = tmp_path / "cam.away"
    # fast: the grabber reads unpaced, so it outruns the pipeline on any machine (at 100 fps an idle
    # one kept up, and no frame was ever overwritten)
    cfg = config(tmp_path, agent_model, video=str(video), live=True, fast=True, reconnect_min_s=0.1, reconnect_max_s=0.4,
                 batch=1, queue_size=1)
    agent, col = open_agent(cfg)
    try:
        agent.start()
        assert col.wait_for(lambda c: len(c.results) >= 3)
        video.rename(away)  # the camera is unplugged
        assert col.wait_for(lambda c: any(e["event"] == "source_down" for e in c.of("/event")), timeout=10)
        assert col.wait_for(lambda c: any(h["source_state"] == "down" for h in c.of("/heartbeat")))
        # What was accepted before the outage drains; then nothing comes while the source is down.
        assert col.wait_for(lambda c: c.of("/heartbeat")[-1]["queue_depth"] == 0
                            and c.of("/heartbeat")[-1]["source_state"] == "down")
        before = len(col.results)
        time.sleep(0.8)
        assert len(col.results) == before
        away.rename(video)  # and plugged back in
        assert col.wait_for(lambda c: any(e["event"] == "source_up" for e in c.of("/event")), timeout=10)
        n_up = len(col.results)
        assert col.wait_for(lambda c: len(c.results) >= n_up + 3)
    finally:
        agent.stop()
        agent.wait(20)
        summary = agent.close()
    col.close()
    up = [e for e in col.of("/event") if e["event"] == "source_up"][0]
    assert up["down_s"] >= 0.5 and up["attempts"] >= 2
    ids = [int(r["frame_id"]) for r in col.results]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # the counter runs on across the reconnect
    assert [r["seq"] for r in col.results] == list(range(1, len(ids) + 1))
    # Newest frame only: frames grabbed while the pipeline was busy were dropped and counted.
    skipped = ids[-1] + 1 - len(ids)  # ids never published before the last one: each was overwritten
    assert skipped > 0 and summary["dropped"] >= skipped


def test_unopenable_video_file_is_a_clear_startup_error(agent_model, tmp_path):
    from inspector.agent.agent import Agent
    from inspector.errors import InspectorError

    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InspectorError, match="broken.avi: cannot open the video"):
        Agent(config(tmp_path, agent_model, video=str(bad))).open()
    with pytest.raises(InspectorError, match="nothere.avi: no such video file"):
        Agent(config(tmp_path, agent_model, video=str(tmp_path / "nothere.avi"))).open()


class HttpServer:
    """A real HTTP server (its own thread) serving a folder: a stand-in for an IP camera's stream URL."""

    def __init__(self, folder, port: int):
        import functools
        import http.server
        import threading

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a, **k: None
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_stream_url_is_read_live_and_reconnects(agent_model, frames, tmp_path):
    from agentkit import free_port

    write_video(tmp_path / "cam.avi", frames, fps=25)
    port = free_port()
    url = f"http://127.0.0.1:{port}/cam.avi"
    cfg = config(tmp_path, agent_model, video=url, reconnect_min_s=0.1, reconnect_max_s=0.2, batch=2)
    assert cfg.source_kind == "stream" and cfg.source_label == "stream"
    server = HttpServer(tmp_path, port)
    agent, col = open_agent(cfg)
    try:
        agent.start()
        assert col.wait_for(lambda c: len(c.results) >= 4)
        server.close()  # the camera's server goes away
        assert col.wait_for(lambda c: any(e["event"] == "source_down" for e in c.of("/event")), timeout=10)
        server = HttpServer(tmp_path, port)
        assert col.wait_for(lambda c: any(e["event"] == "source_up" for e in c.of("/event")), timeout=10)
        n = len(col.results)
        assert col.wait_for(lambda c: len(c.results) >= n + 2)
    finally:
        agent.stop()
        agent.wait(20)
        summary = agent.close()
        server.close()
    col.close()
    assert summary["dropped"] > 0  # served faster than scored: only the newest frame is kept
    assert all(r["source"] == "stream" and r["verdict"] in ("pass", "fail") for r in col.results)
    assert [r["seq"] for r in col.results] == list(range(1, len(col.results) + 1))
