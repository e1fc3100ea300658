"""`build-engine`: the inspector's ONNX model -> a self-describing TensorRT plan.

fp16.py   mixed-precision ONNX (FP16 feature extractor, FP32 input stage and scoring head), CPU accuracy check
plan.py   the .plan container: header + model metadata + TensorRT version + GPU + raw engine bytes
builder.py the TensorRT build (one strongly typed path for TensorRT 10 and 11) and its self-check
cli.py    the command line

Only builder.py touches TensorRT or CUDA, and only when a build runs.
"""
