"""Apache TVM: target profiles (``profiles.py``), building (``build.py``), the artifact
folder and its runtime (``artifact.py``), tuning (``tune.py`` with the convolution template
in ``schedules.py`` and re-measured choices in ``confirm.py``), tuning over RPC (``rpc.py``),
and every use of TVM's internals (``compat.py``). TVM is imported inside functions only,
through :func:`nindsl.tvm.env.require_tvm`."""
