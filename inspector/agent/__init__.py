"""`inspector run`: the long-running inspection agent (sources -> preprocess -> backend -> decision -> publisher).

Nothing here imports torch or timm: this package is the line-PC runtime. Modules, one job each:
config (RunConfig), sources/folder/capture (frame readers), tiling (ROI, tiles, stitching),
pipeline (bounded queues, micro-batching, in-flight batches, order), decision, messages (payloads),
resultlog (durable SQLite WAL log), publisher (ZeroMQ PUB + heartbeat), recovery (log endpoint),
stats, jsonlog (structured logs), signals, agent (wiring), cli_run (the `run` command).
"""
