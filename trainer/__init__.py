"""CSE training: frozen ImageNet backbone, contrastive 1x1-conv embedder, k-means memory, ONNX export."""

import os

# Before torch loads OpenMP: busy-waiting threads collapse throughput whenever another process
# shares the cores (measured here: a training step went from 0.1 s to 6 s on 2 busy cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
