#!/usr/bin/env python3
"""Soak: --frames frames (default 10,000) from a looping video, the subscriber killed and restarted mid-run.

1. Writes a short video with OpenCV's VideoWriter (FFV1 .avi) from real images (--images).
2. Runs `inspector run --video loop.avi --loop --fast --max-frames N` as its own process.
3. Runs deploy/subscriber.py (--out results.jsonl) in another; at --kill-at of the run it is killed
   with SIGKILL, stays down --down-s seconds, and is restarted (it resumes from its output file and
   recovers what it missed from the agent's log endpoint).
4. Passes when the subscriber ends with every sequence number 1..N exactly once, the agent exits 0,
   and the agent's memory is flat: RSS (from /proc) at the start (after --warm frames) and at the end
   differ by less than --max-growth-mb.

    .venv/bin/python benchmarks/soak.py --model /tmp/agent_model.onnx              # 10,000 frames
    .venv/bin/python benchmarks/soak.py --model /tmp/agent_model.onnx --frames 500 # a quick one

Prints the figures and writes them as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
PIPED = REPO.parent / "shared" / "data" / "piped" / "PA_BDP01_TL" / "test"
DEFAULT_IMAGES = [PIPED / "good", PIPED / "defect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def make_video(folders: list[Path], path: Path, n: int, size: tuple[int, int]) -> int:
    per = [sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp")) for d in folders]
    files = [f for group in zip(*per) for f in group][:n]  # interleaved: good, defective, good, ...
    if not files:
        raise SystemExit(f"{folders}: no images for the video")
    # Lossless FFV1 where this OpenCV build has it, so the verdicts are the images' own; else MJPG
    # (whose artefacts a texture model may well call defects).
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25.0, size)
    if not writer.isOpened():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    for f in files:
        writer.write(cv2.resize(cv2.imread(str(f), cv2.IMREAD_COLOR), size))
    writer.release()
    return len(files)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--images", type=Path, nargs="+", default=DEFAULT_IMAGES,
                   help="folders of images the looping video is made of (interleaved)")
    p.add_argument("--video-frames", type=int, default=48)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("W", "H"))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--kill-at", type=float, default=0.5, help="fraction of the run at which the subscriber is killed")
    p.add_argument("--down-s", type=float, default=3.0, help="seconds the subscriber stays down")
    p.add_argument("--warm", type=int, default=None, help="frames before the start RSS (default: 5%% of --frames)")
    p.add_argument("--max-growth-mb", type=float, default=25.0)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    args = p.parse_args()
    n = args.frames
    warm = args.warm if args.warm is not None else max(1, n // 20)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    video = work / "loop.avi"
    vframes = make_video(args.images, video, args.video_frames, tuple(args.size))
    port, rport = free_port(), free_port()
    out = work / "results.jsonl"
    inspector = Path(sys.executable).with_name("inspector")
    agent_cmd = [str(inspector), "run", "--video", str(video), "--loop", "--fast", "--max-frames", str(n),
                 "--model", str(args.model), "--batch", str(args.batch), "--station", "soak",
                 "--publish", f"tcp://127.0.0.1:{port}", "--recovery", f"tcp://127.0.0.1:{rport}",
                 "--log-db", str(work / "results.db"), "--linger", "5", "--log-level", "warning"]
    sub_cmd = [sys.executable, str(REPO / "deploy" / "subscriber.py"), "--connect", f"tcp://127.0.0.1:{port}",
               "--recovery", f"tcp://127.0.0.1:{rport}", "--station", "soak", "--from-start", "--quiet",
               "--out", str(out), "--timeout", "2"]
    print(f"soak: {n} frames from a {vframes}-frame looping video ({video}), model {args.model}, batch {args.batch}", flush=True)
    t0 = time.monotonic()
    agent = subprocess.Popen(agent_cmd, stdout=subprocess.PIPE, stderr=open(work / "agent.log", "w"), text=True)
    sub1 = subprocess.Popen(sub_cmd, stdout=subprocess.DEVNULL, stderr=open(work / "subscriber1.log", "w"))
    rss_start = rss_end = None
    rss_max = 0.0
    sub2 = None
    killed_at = None
    samples = []
    while agent.poll() is None:
        time.sleep(0.5)
        done = count_lines(out) if sub2 is None else None
        rss = rss_mb(agent.pid)
        if rss is None:
            continue
        rss_max = max(rss_max, rss)
        # Progress from the agent's own log (read-only; WAL lets us read while it writes).
        try:
            with sqlite3.connect(f"file:{work / 'results.db'}?mode=ro", uri=True, timeout=5) as con:
                last = con.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
        except Exception:
            last = 0
        samples.append((round(time.monotonic() - t0, 1), last, round(rss, 1)))
        if rss_start is None and last >= warm:
            rss_start = rss
            print(f"  start RSS {rss:.1f} MB after {last} frames", flush=True)
        if last < n:
            rss_end = rss  # the last sample while frames were still flowing
        if sub2 is None and killed_at is None and last >= args.kill_at * n:
            sub1.send_signal(signal.SIGKILL)
            sub1.wait()
            killed_at = last
            print(f"  subscriber killed (SIGKILL) at seq {last}; it had written {done} results", flush=True)
            time.sleep(args.down_s)
            sub2 = subprocess.Popen(sub_cmd + ["--until-seq", str(n)], stdout=subprocess.DEVNULL,
                                    stderr=open(work / "subscriber2.log", "w"))
            print(f"  subscriber restarted after {args.down_s:g} s", flush=True)
        if len(samples) % 60 == 0:
            print(f"  {samples[-1][0]:>7.1f} s  seq {last:>6}  RSS {rss:.1f} MB", flush=True)
    agent_out = agent.stdout.read().strip()
    elapsed = time.monotonic() - t0
    if sub2 is None:  # the run was too short to reach the kill point
        sub1.send_signal(signal.SIGKILL)
        sub1.wait()
        sub2 = subprocess.Popen(sub_cmd + ["--until-seq", str(n)], stdout=subprocess.DEVNULL,
                                stderr=open(work / "subscriber2.log", "w"))
    try:
        sub2.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sub2.kill()
    seqs = [json.loads(line)["seq"] for line in out.read_text().splitlines()] if out.exists() else []
    exactly_once = seqs == list(range(1, n + 1))
    sub_summary = [json.loads(x) for x in (work / "subscriber2.log").read_text().splitlines() if '"summary"' in x]
    growth = (rss_end - rss_start) if rss_start is not None and rss_end is not None else None
    flat = growth is not None and abs(growth) < args.max_growth_mb
    ok = agent.returncode == 0 and sub2.returncode == 0 and exactly_once and flat
    print(f"agent: rc {agent.returncode}, {agent_out}")
    print(f"subscriber: {len(seqs)} results, {len(set(seqs))} distinct; every sequence 1..{n} exactly once: {exactly_once}")
    if sub_summary:
        s = sub_summary[-1]
        print(f"  restarted subscriber recovered {s['recovered']} results from the log "
              f"(gaps {s['gaps']}, duplicates dropped {s['duplicates']}, lost {s['lost']})")
    print(f"agent RSS: start {rss_start:.1f} MB, end {rss_end:.1f} MB, max {rss_max:.1f} MB, growth {growth:+.1f} MB "
          f"({'flat' if flat else 'NOT flat'}, limit {args.max_growth_mb:g} MB)" if growth is not None else "RSS: not measured")
    print(f"{elapsed:.1f} s, {n / elapsed:.1f} frames/s overall -> {'PASS' if ok else 'FAIL'}")
    report = {"command": " ".join([Path(sys.executable).name] + sys.argv), "frames": n, "video_frames": vframes,
              "batch": args.batch, "agent_rc": agent.returncode, "agent_summary": agent_out,
              "subscriber_killed_at_seq": killed_at, "subscriber_down_s": args.down_s,
              "subscriber_results": len(seqs), "exactly_once": exactly_once,
              "restarted_subscriber": sub_summary[-1] if sub_summary else None,
              "rss_mb": {"start": rss_start, "end": rss_end, "max": rss_max, "growth": growth, "flat": flat,
                         "start_after_frames": warm},
              "elapsed_s": round(elapsed, 1), "pass": ok, "work_dir": str(work),
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "rss_samples": samples[:: max(1, len(samples) // 50)]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json} (logs in {work})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
