"""Convolution kernels by instruction set: ``int8.py`` (AVX2, AVX-512BW, VNNI dot-product
steps), ``bf16.py`` (AVX512-BF16, and its FMA twin), ``amx.py`` (AMX tiles, int8 and bf16)."""
