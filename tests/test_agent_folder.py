"""The agent on a folder: scores equal `inspector evaluate`'s, order, exactly once, errors, --watch, recovery."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from agentkit import agent_model, config, link_images, open_agent, request, run_agent
from inspector.backends import open_backend
from inspector import dataset
from inspector.evaluate import score_items


@pytest.fixture(scope="module")
def mixed(piped, tmp_path_factory):
    """8 good and 8 defective real images (symlinks), sorted names interleave nothing: good_* then defect_*."""
    folder = tmp_path_factory.mktemp("mixed")
    link_images(piped / "test" / "good", folder, 8)
    link_images(piped / "test" / "defect", folder, 8)
    return folder


def test_scores_equal_evaluate(agent_model, mixed, tmp_path):
    summary, col, agent = run_agent(config(tmp_path, agent_model, folder=str(mixed), batch=3))
    col.close()
    files = sorted(p for p in mixed.iterdir())
    with open_backend(agent_model) as be:
        ref = score_items(be, [dataset.TestItem(p, "good", None) for p in files])
        threshold = be.meta.threshold.value
    got = {r["frame_id"]: r for r in col.results}
    assert sorted(got) == [p.name for p in files]
    scores = np.array([got[p.name]["score"] for p in files])
    np.testing.assert_allclose(scores, ref.scores, rtol=0, atol=1e-6)
    for p, s in zip(files, ref.scores):
        r = got[p.name]
        assert r["threshold"] == pytest.approx(threshold, abs=1e-9)
        assert r["verdict"] == ("fail" if s >= threshold else "pass")
        assert r["ratio"] == pytest.approx(s / threshold, abs=1e-5)
    assert {r["verdict"] for r in col.results} == {"pass", "fail"}  # the mix really exercises both


def test_folder_run_every_file_once_in_order(agent_model, piped, tmp_path):
    folder = tmp_path / "imgs"
    files = link_images(piped / "test" / "defect", folder, 11)
    summary, col, agent = run_agent(config(tmp_path, agent_model, folder=str(folder), batch=4, queue_size=3))
    col.close()
    res = col.results
    assert [r["frame_id"] for r in res] == [f.name for f in files]
    assert [r["seq"] for r in res] == list(range(1, len(files) + 1))
    assert summary["published"] == summary["frames_in"] == len(files)
    r = res[0]
    assert r["schema"] == "inspector.result/1" and r["station"] == "t" and r["source"] == "imgs"
    assert set(r["latency_ms"]) == {"read", "queue", "preprocess", "infer", "post", "total"}
    assert r["publish_ts"] >= r["capture_ts"] > 0 and r["model_id"] and r["log_id"] and r["error"] is None
    # The durable log holds the very same payloads.
    with sqlite3.connect(tmp_path / "results.db") as con:
        rows = con.execute("SELECT seq, frame_id FROM results ORDER BY seq").fetchall()
    assert rows == [(i + 1, f.name) for i, f in enumerate(files)]
    events = [e["event"] for e in col.of("/event")]
    assert events[0] == "started" and events[-2:] == ["source_ended", "stopping"]


def test_unreadable_files_give_error_results_and_the_run_continues(agent_model, piped, tmp_path):
    folder = tmp_path / "bad"
    link_images(piped / "test" / "good", folder, 3)
    (folder / "a_empty.png").write_bytes(b"")
    (folder / "b_garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    (folder / "notes.txt").write_text("not an image, ignored")
    summary, col, agent = run_agent(config(tmp_path, agent_model, folder=str(folder), batch=2))
    col.close()
    res = {r["frame_id"]: r for r in col.results}
    assert len(col.results) == 5 and "notes.txt" not in res
    assert res["a_empty.png"]["verdict"] == "error" and "empty file" in res["a_empty.png"]["error"]
    assert res["b_garbage.jpg"]["verdict"] == "error" and "not a decodable image" in res["b_garbage.jpg"]["error"]
    assert res["a_empty.png"]["score"] is None and res["a_empty.png"]["tiles"] == 0
    good = [r for r in col.results if r["verdict"] != "error"]
    assert len(good) == 3 and all(r["score"] is not None for r in good)
    assert [r["seq"] for r in col.results] == [1, 2, 3, 4, 5]
    assert summary["errors"] == 2


def test_watch_scores_a_new_file_once_and_never_half_written(agent_model, piped, tmp_path):
    folder = tmp_path / "watched"
    link_images(piped / "test" / "good", folder, 2)
    src = sorted((piped / "test" / "defect").glob("*.png"))[0]
    data = src.read_bytes()
    cfg = config(tmp_path, agent_model, folder=str(folder), watch=True, settle_s=1.0, poll_s=0.05)
    agent, col = open_agent(cfg)
    try:
        agent.start()
        assert col.wait_for(lambda c: len(c.results) == 2)
        target = folder / "z_new.png"
        with open(target, "wb") as f:  # slowly, in chunks: pauses shorter than settle_s
            for i in range(0, len(data), len(data) // 6 + 1):
                f.write(data[i : i + len(data) // 6 + 1])
                f.flush()
                time.sleep(0.2)
        assert col.wait_for(lambda c: len(c.results) == 3, timeout=10)
        target.touch()  # modified after scoring: still scored only once
        time.sleep(1.5)
    finally:
        agent.stop()
        agent.wait(20)
        agent.close()
    col.close()
    new = [r for r in col.results if r["frame_id"] == "z_new.png"]
    assert len(new) == 1 and new[0]["verdict"] != "error", new
    with open_backend(agent_model) as be:
        ref = score_items(be, [dataset.TestItem(src, "defect", None)]).scores[0]
    assert new[0]["score"] == pytest.approx(float(ref), abs=1e-6)  # the whole file was read
    assert len(col.results) == 3


def test_recovery_endpoint_returns_missed_results(agent_model, piped, tmp_path):
    folder = tmp_path / "rec"
    files = link_images(piped / "test" / "good", folder, 6)
    cfg = config(tmp_path, agent_model, folder=str(folder), watch=True, batch=2)
    agent, col = open_agent(cfg)
    try:
        agent.start()
        assert col.wait_for(lambda c: len(c.results) == 6)
        ep = agent.endpoints["recovery"]
        rep = request(ep, {"cmd": "since", "seq": 2})
        assert rep["ok"] and rep["schema"] == "inspector.reply/1" and rep["cmd"] == "since"
        assert [r["seq"] for r in rep["results"]] == [3, 4, 5, 6]
        assert rep["results"] == col.results[2:]  # byte-for-byte the published payloads
        assert rep["last_seq"] == 6 and rep["first_seq"] == 1 and rep["more"] is False and rep["lost"] is None
        page = request(ep, {"cmd": "since", "seq": 0, "limit": 4})
        assert [r["seq"] for r in page["results"]] == [1, 2, 3, 4] and page["more"] is True
        assert [r["seq"] for r in request(ep, "since 5")["results"]] == [6]
        assert request(ep, "since 6")["results"] == []
        status = request(ep, "status")
        assert status["ok"] and status["status"]["log"]["last_seq"] == 6 and status["status"]["published"] == 6
        assert status["status"]["state"] == "running" and status["status"]["source_state"] == "up"
        assert any(e["event"] == "started" for e in status["status"]["events"])
        for bad, why in [("since x", "integers"), ({"cmd": "since", "seq": -1}, "seq"), ({"cmd": "nope"}, "unknown cmd"),
                         ("hello", "unknown request"), ({"cmd": "since", "seq": 0, "limit": 10**6}, "limit")]:
            rep = request(ep, bad)
            assert rep["ok"] is False and why in rep["error"], (bad, rep)
    finally:
        agent.stop()
        agent.wait(20)
        agent.close()
    col.close()
    assert [r["frame_id"] for r in col.results] == [f.name for f in files]


def test_sequence_continues_across_restarts_on_the_same_log(agent_model, piped, tmp_path):
    folder = tmp_path / "again"
    link_images(piped / "test" / "good", folder, 2)
    s1, c1, _ = run_agent(config(tmp_path, agent_model, folder=str(folder)))
    s2, c2, _ = run_agent(config(tmp_path, agent_model, folder=str(folder)))
    c1.close()
    c2.close()
    assert [r["seq"] for r in c1.results] == [1, 2] and [r["seq"] for r in c2.results] == [3, 4]
    assert c1.results[0]["log_id"] == c2.results[0]["log_id"]


def test_stop_drains_everything_accepted(agent_model, piped, tmp_path):
    """In-process stop (what SIGTERM triggers): queued frames are still scored and published."""
    folder = tmp_path / "drain"
    link_images(piped / "test" / "defect", folder, 20)
    cfg = config(tmp_path, agent_model, folder=str(folder), batch=1, queue_size=8, in_flight=2)
    agent, col = open_agent(cfg)
    agent.start()
    assert col.wait_for(lambda c: len(c.results) >= 1)
    agent.stop("test stop")
    at_stop = len(col.results)
    assert agent.wait(30)
    summary = agent.close()
    col.wait_for(lambda c: len(c.results) == summary["frames_in"], timeout=5)
    col.close()
    assert summary["published"] == summary["frames_in"] < 20
    assert len(col.results) == summary["frames_in"] > at_stop  # frames queued at the stop were drained
    names = sorted(p.name for p in folder.iterdir())
    assert [r["frame_id"] for r in col.results] == names[: len(col.results)]
    assert summary["reason"] == "test stop"


def test_in_order_with_several_inference_threads(agent_model, piped, tmp_path):
    folder = tmp_path / "par"
    files = link_images(piped / "test" / "defect", folder, 10)
    summary, col, _ = run_agent(config(tmp_path, agent_model, folder=str(folder), batch=1, in_flight=4, infer_threads=3))
    col.close()
    assert [r["frame_id"] for r in col.results] == [f.name for f in files]
    assert [r["seq"] for r in col.results] == list(range(1, 11))


def test_threshold_override(agent_model, piped, tmp_path):
    folder = tmp_path / "thr"
    link_images(piped / "test" / "good", folder, 2)
    _, col, _ = run_agent(config(tmp_path, agent_model, folder=str(folder), threshold=1e-6))
    col.close()
    assert [r["verdict"] for r in col.results] == ["fail", "fail"]
    assert all(r["threshold"] == pytest.approx(1e-6) for r in col.results)


def test_watched_folder_that_vanishes_is_waited_for(agent_model, piped, tmp_path):
    folder = tmp_path / "share"
    link_images(piped / "test" / "good", folder, 2)
    cfg = config(tmp_path, agent_model, folder=str(folder), watch=True, poll_s=0.05)
    agent, col = open_agent(cfg)
    try:
        agent.start()
        assert col.wait_for(lambda c: len(c.results) == 2)
        folder.rename(tmp_path / "share.away")  # a network share drops out
        assert col.wait_for(lambda c: any(h["source_state"] == "down" for h in c.of("/heartbeat")))
        (tmp_path / "share.away").rename(folder)
        link_images(piped / "test" / "defect", folder, 1)
        assert col.wait_for(lambda c: len(c.results) == 3)
    finally:
        agent.stop()
        agent.wait(20)
        summary = agent.close()
    col.close()
    assert summary["failed"] == "" and [r["seq"] for r in col.results] == [1, 2, 3]
    assert col.of("/heartbeat")[-1]["source_state"] == "up"
