"""Tuning: measuring candidate schedules and keeping the fastest.

``search.py`` is MetaSchedule's search (:func:`~nindsl.tvm.tune.search.tune`, its options and
database folders); ``confirm.py`` re-measures each task's best records side by side; ``rpc.py``
measures on other machines through TVM's RPC tracker. The narrow precisions' block search lives
with their kernels (:mod:`nindsl.tvm.narrow.blocks`) and keeps its cache in these folders.
"""
