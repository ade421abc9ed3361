"""ONNX: lowering a checked network (``lower.py``), reading and describing ONNX files
(``model.py``), and running them (``runtime.py``: every ONNX Runtime session is opened
there). Imports ``onnx`` and ``onnxruntime`` only inside the functions that need them."""
