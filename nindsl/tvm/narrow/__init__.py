"""Narrow precisions on CPUs: int8 and bf16 builds of nindsl's own scheduled kernels.

``chain.py`` is what both share: the chain of kernels a quantized plan becomes (input,
convolutions, pools, head), its Relax module and :class:`~nindsl.tvm.narrow.chain.QuantizedBuild`;
``int8.py`` and ``bf16.py`` give the chain its numbers; ``blocks.py`` measures each convolution's
register or tile block under ``--tune``; ``precision.py`` refuses a precision a CPU cannot run
fast. ``kernels/`` holds the convolutions per instruction set (AVX2/AVX-512/VNNI, AVX512-BF16,
AMX tiles). Nothing here imports :mod:`nindsl.tvm.gpu` (import-linter keeps them apart).
"""
