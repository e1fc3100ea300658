"""The printed table: this machine's figures beside the paper's."""

from __future__ import annotations

from .hardware import describe


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(res: dict) -> list[str]:
    m = res["model"]
    batches = res["settings"]["batches"]
    lines = [
        f"inspector bench: {m['model_id']} ({m['backbone']}, {m['head']} head, {m['precision']}, "
        f"input {m['input'][1]}x{m['input'][0]})",
        f"hardware: {describe(res['hardware'])}",
        f"load average (1, 5, 15 min): before {res['load_average'].get('before')}, after {res['load_average'].get('after')}",
        "",
    ]
    head = f"{'backend':<40} {'prec':<5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} " + " ".join(
        f"{'fps@' + str(b):>8}" for b in batches)
    lines += [head, "-" * len(head)]
    for row in res["backends"]:
        lat = row["latency_ms"]
        fps = {t["batch"]: t["fps"] for t in row["throughput"]}
        lines.append(f"{row['backend']:<40} {row['precision']:<5} {_f(lat['p50'], 2):>7} {_f(lat['p90'], 2):>7} "
                     f"{_f(lat['p99'], 2):>7} " + " ".join(f"{_f(fps.get(b)):>8}" for b in batches))
    paper = res["paper"]
    for p in paper["rows"]:
        fps = p.get("fps") or (1e3 / p["latency_ms"])
        name = f"paper: {p['method']}, {p['backbone']}"
        lines.append(f"{name[:40]:<40} {'fp32':<5} {_f(p['latency_ms'], 1):>7} {'':>7} {'':>7} {_f(fps):>8}")
    lines.append(f"(paper rows: {paper['hardware']}, batch 1; target {res['target_ms']:g} ms per frame)")
    pre = res.get("preprocess")
    if pre:
        lines += ["", f"host preprocessing per frame ({pre['source']}, {pre['threads']} thread): "
                      f"read+decode {_f(pre['read_ms']['p50'], 2)} ms + resize/crop {_f(pre['resize_crop_ms']['p50'], 2)} ms "
                      f"= {_f(pre['total_ms']['p50'], 2)} ms p50 ({_f(pre['total_ms']['p99'], 2)} p99)"]
    for mode, e in (res.get("end_to_end") or {}).items():
        p = e["pipeline"]
        stage = e["agent_latency_ms"]
        lines.append(f"end to end, {mode} (agent -> ZeroMQ subscriber, {e['backend']}, batch {p['batch']}, "
                     f"{p['in_flight']} in flight" + (f", a frame every {p['frame_period_ms']:g} ms" if p.get('frame_period_ms') else "")
                     + f"): {e['frames']} frames, {_f(e['throughput_fps'])} frames/s; "
                     f"latency p50 {_f(e['latency_ms']['p50'])} ms, p90 {_f(e['latency_ms']['p90'])}, "
                     f"p99 {_f(e['latency_ms']['p99'])} (infer p50 {_f(stage['infer'].get('p50'))}, "
                     f"queue p50 {_f(stage['queue'].get('p50'))})")
    best = min((r["latency_ms"]["p50"] for r in res["backends"] if r["backend"].endswith("cpu")), default=None)
    if best is not None:
        verdict = "meets" if best <= res["target_ms"] else f"is {best - res['target_ms']:.1f} ms above"
        lines.append(f"best CPU batch-1 p50: {best:.2f} ms; it {verdict} the paper's {res['target_ms']:g} ms (GPU) figure")
    for k, v in res.get("errors", {}).items():
        lines.append(f"not measured: {k}: {v}")
    for n in res.get("notes", []):
        lines.append(f"note: {n}")
    return lines
