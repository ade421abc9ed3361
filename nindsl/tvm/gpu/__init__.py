"""CUDA builds: ``cuda.py`` compiles kernels to machine code with nvcc at build time and reads
it back; ``rules.py`` schedules kernels (DLight's rules, with nindsl's pooling and tensor-core
fallback); ``half.py`` is the fp16 build. Nothing here imports :mod:`nindsl.tvm.narrow`."""
