"""CSE training: frozen ImageNet backbone, contrastive 1x1-conv embedder, k-means memory, ONNX export."""
