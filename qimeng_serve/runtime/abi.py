"""The kernels' one argument, `qm::AttnParams` (kernels_src/include/qimeng/params.cuh), as ctypes.

Field order, types and offsets are the ABI; tests pin them against the header's static_asserts.
"""

from __future__ import annotations

import ctypes

_FIELDS = [
    ("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("o", ctypes.c_void_p),
    ("cu_seqlens_q", ctypes.c_void_p), ("cu_seqlens_k", ctypes.c_void_p), ("seqlens_k", ctypes.c_void_p),
    ("block_table", ctypes.c_void_p), ("o_partial", ctypes.c_void_p), ("lse", ctypes.c_void_p),
    ("q_batch_stride", ctypes.c_int64), ("q_token_stride", ctypes.c_int64), ("q_head_stride", ctypes.c_int64),
    ("o_batch_stride", ctypes.c_int64), ("o_token_stride", ctypes.c_int64), ("o_head_stride", ctypes.c_int64),
    ("k_batch_stride", ctypes.c_int64), ("k_token_stride", ctypes.c_int64), ("k_head_stride", ctypes.c_int64),
    ("v_batch_stride", ctypes.c_int64), ("v_token_stride", ctypes.c_int64), ("v_head_stride", ctypes.c_int64),
    ("block_table_stride", ctypes.c_int64),
    ("batch", ctypes.c_int32), ("heads_q", ctypes.c_int32), ("heads_kv", ctypes.c_int32),
    ("max_seqlen_q", ctypes.c_int32), ("max_seqlen_k", ctypes.c_int32), ("page_size", ctypes.c_int32),
    ("causal", ctypes.c_int32), ("window_left", ctypes.c_int32), ("split_size", ctypes.c_int32),
    ("num_splits", ctypes.c_int32), ("softmax_scale_log2", ctypes.c_float), ("softcap", ctypes.c_float),
]


class AttnParams(ctypes.Structure):
    _fields_ = _FIELDS


ABI_SIZE = 232
assert ctypes.sizeof(AttnParams) == ABI_SIZE, "AttnParams no longer matches params.cuh"
