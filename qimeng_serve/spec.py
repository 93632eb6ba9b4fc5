"""AttentionSpec: what a kernel computes, independent of how.

The spec's fields become TL's spec constants (D, GROUP, QLEN, CAUSAL, WINDOW, SOFTCAP, DTYPE);
`validate_for` says, with the fix, why a spec cannot be built for a target.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from qimeng_serve.errors import SpecError
from qimeng_serve.targets import Target

OPS = ("paged_prefill", "paged_decode", "dense_prefill")
DTYPES = ("f16", "bf16", "e4m3")
HEAD_DIMS = (64, 128, 256)
DTYPE_ALIASES = {"fp16": "f16", "float16": "f16", "half": "f16", "bfloat16": "bf16", "fp8": "e4m3",
                 "float8_e4m3fn": "e4m3"}


@dataclass(frozen=True)
class AttentionSpec:
    op: str  # paged_prefill | paged_decode | dense_prefill
    dtype: str = "f16"  # f16 | bf16 | e4m3
    head_dim: int = 128
    gqa_group: int = 1  # query heads per KV head (1 = MHA)
    causal: bool = True
    sliding_window: int = 0  # a query sees the last `sliding_window` keys up to its diagonal; 0 = unlimited
    softcap: float = 0.0  # logits soft-cap (Gemma 2 style); 0 = off
    decode_query_len: int = 1  # query tokens per sequence a decode kernel packs (speculative decoding > 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", DTYPE_ALIASES.get(self.dtype, self.dtype))
        if self.op not in OPS:
            raise SpecError(f"unknown op '{self.op}'", fix=f"use one of {', '.join(OPS)}")
        if self.dtype not in DTYPES:
            raise SpecError(f"unsupported dtype '{self.dtype}'", fix=f"use one of {', '.join(DTYPES)}")
        if self.head_dim not in HEAD_DIMS:
            raise SpecError(
                f"unsupported head size {self.head_dim}",
                fix=f"use a head size of {', '.join(map(str, HEAD_DIMS))}",
            )
        if self.gqa_group < 1 or self.gqa_group > 64:
            raise SpecError(f"GQA group size {self.gqa_group} out of range",
                            fix="use query heads / KV heads, between 1 and 64")
        if self.sliding_window < 0:
            raise SpecError(f"sliding window {self.sliding_window} is negative", fix="use 0 for no window")
        if self.softcap < 0:
            raise SpecError(f"soft-cap {self.softcap} is negative", fix="use 0.0 for no soft-cap")
        if self.decode_query_len < 1:
            raise SpecError("decode_query_len must be at least 1", fix="use 1 for plain decode")

    def validate_for(self, target: Target) -> None:
        """Raise SpecError when the target cannot run this spec."""
        if self.dtype not in target.dtypes:
            if self.dtype == "bf16":
                raise SpecError(f"{target.arch} has no bf16 tensor cores", fix="use fp16 (--dtype f16)")
            raise SpecError(
                f"{target.arch} has no {self.dtype} tensor cores",
                fix=f"use one of {', '.join(target.dtypes)}, or target sm_89 / sm_90 for fp8",
            )
        if self.dtype == "e4m3":
            raise SpecError("fp8 attention kernels are not in the kernel set yet", fix="use f16 or bf16")

    def constants(self) -> dict[str, int | float | str]:
        """TL spec constants."""
        return {
            "D": self.head_dim,
            "GROUP": self.gqa_group,
            "QLEN": self.decode_query_len if self.op == "paged_decode" else 0,
            "CAUSAL": int(self.causal),
            "WINDOW": self.sliding_window,
            "SOFTCAP": float(self.softcap),
            "DTYPE": self.dtype,
        }

    def key(self) -> str:
        """Readable, filename-safe name: paged_prefill_f16_hd128_g4_causal."""
        parts = [self.op, self.dtype, f"hd{self.head_dim}", f"g{self.gqa_group}"]
        parts.append("causal" if self.causal else "full")
        if self.sliding_window:
            parts.append(f"win{self.sliding_window}")
        if self.softcap:
            parts.append(f"cap{self.softcap:g}")
        if self.op == "paged_decode" and self.decode_query_len != 1:
            parts.append(f"q{self.decode_query_len}")
        return "_".join(parts)

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_dict(self) -> dict:
        return asdict(self)
