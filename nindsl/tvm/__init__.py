"""Apache TVM, in rooms (each with a docstring that says what lives there):

- here: ``env.py`` (importing TVM), ``compat.py`` (every use of TVM's internals), ``profiles.py``
  (target profiles), ``build.py`` (ONNX → Relax → executable), ``untuned.py`` and
  ``schedules.py`` (the float32 CPU template);
- ``tune/``: MetaSchedule tuning, confirmation, RPC;
- ``narrow/``: int8 and bf16 CPU builds and their kernels;
- ``gpu/``: CUDA compilation, GPU schedule rules, fp16;
- ``deploy/``: the artifact folder and the runtime-only bundle.

TVM is imported inside functions only, through :func:`nindsl.tvm.env.require_tvm`.
"""
