"""The op's global tensors (docs/tl.md §4) behind their logical index [lead..., sequence, head, position].

A view `Q[b, h0 : h1, i0 : i1]` is the cartesian product of its indices, first index outermost
(head-major). Rows whose position is outside the sequence (or past the block table) read as zero
and are not written; an out-of-range sequence, head or split index is a program error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from qimeng_serve.tl.problem import Problem
from qimeng_serve.tl.values import EvalError, Tile

Index = int | range


@dataclass
class GlobalTensor:
    name: str
    storage: torch.Tensor
    lead: tuple[int, ...]  # extents of the indices before [sequence, head, position] (the split, for O_part / LSE)
    heads: int
    lengths: torch.Tensor  # [batch] int64: positions of sequence b are 0 .. lengths[b] - 1
    address: Callable  # (lead tensors, b, h, pos) -> index tuple into storage, for valid rows
    row_width: int | None  # D, or None for a tensor of scalars (LSE)
    extra_valid: Callable | None = None  # (b, pos) -> bool tensor: more rows that do not exist (paged)

    @property
    def ndim(self) -> int:
        return len(self.lead) + 3

    def rows(self, indices: list[Index]) -> list[torch.Tensor]:
        """Per index, one int64 tensor over the view's rows (cartesian product, first index outermost)."""
        if len(indices) != self.ndim:
            names = ["split"] * len(self.lead) + ["sequence", "head", "position"]
            raise EvalError(f"{self.name} takes {self.ndim} indices, got {len(indices)}",
                            fix=f"index {self.name}[{', '.join(names)}]")
        axes = [torch.tensor([i]) if isinstance(i, int) else torch.arange(i.start, i.stop) for i in indices]
        cols = [g.reshape(-1) for g in torch.meshgrid(*axes, indexing="ij")]
        extents = [*self.lead, len(self.lengths), self.heads]
        labels = ["split"] * len(self.lead) + ["sequence", "head"]
        for col, extent, label in zip(cols, extents, labels):
            if col.numel() and (col.min() < 0 or col.max() >= extent):
                bad = int(col.max()) if col.max() >= extent else int(col.min())
                raise EvalError(f"{self.name}: {label} index {bad} is out of range 0 .. {extent - 1}",
                                fix=f"keep the {label} index of {self.name} below {extent}")
        return cols

    def _valid(self, cols: list[torch.Tensor]) -> torch.Tensor:
        b, pos = cols[-3], cols[-1]
        valid = (pos >= 0) & (pos < self.lengths[b])
        if self.extra_valid is not None:
            valid &= self.extra_valid(b, pos.clamp(min=0))
        return valid

    def read(self, indices: list[Index], dtype: torch.dtype, shape: tuple[int, ...]) -> Tile:
        """The view as a tile of a buffer's shape: view rows first, then zero padding rows (head, position -1)."""
        cols = self.rows(indices)
        self._fits(len(cols[0]), shape, "into")
        valid = self._valid(cols)
        data = torch.zeros(shape, dtype=dtype)
        if valid.any():
            rows = torch.arange(len(valid))[valid]
            data[rows] = self.storage[self.address(*[c[valid] for c in cols])].to(dtype)
        pad = torch.full((shape[0] - len(valid),), -1, dtype=torch.int64)
        return Tile(data, row_head=torch.cat([cols[-2], pad]), row_pos=torch.cat([cols[-1], pad]))

    def write(self, indices: list[Index], data: torch.Tensor) -> None:
        """Store the first rows of a buffer into the view's rows that exist."""
        cols = self.rows(indices)
        self._fits(len(cols[0]), tuple(data.shape), "from")
        valid = self._valid(cols)
        if valid.any():
            self.storage[self.address(*[c[valid] for c in cols])] = data[: len(valid)][valid].to(self.storage.dtype)

    def _fits(self, view_rows: int, shape: tuple[int, ...], direction: str) -> None:
        row = "a scalar" if self.row_width is None else f"{self.row_width} values"
        if (len(shape) == 1) != (self.row_width is None) or (self.row_width is not None and shape[1] != self.row_width):
            want = "[rows]" if self.row_width is None else f"[rows, {self.row_width}]"
            raise EvalError(f"each row of {self.name} is {row}, but the buffer is {list(shape)}",
                            fix=f"copy {self.name} {direction} a buffer shaped {want}")
        if view_rows > shape[0]:
            raise EvalError(f"the view of {self.name} has {view_rows} rows, the buffer only {shape[0]}",
                            fix="make the view's ranges cover at most the buffer's rows (view rows <= buffer rows)")


def _padded(seqs: list[torch.Tensor], fill: float = float("nan")) -> torch.Tensor:
    """[B, H, Lmax, D] from per-sequence [H, L, D]; the padding is NaN so that a stray read shows."""
    h, d = seqs[0].shape[0], seqs[0].shape[2]
    out = torch.full((len(seqs), h, max(s.shape[1] for s in seqs), d), fill, dtype=seqs[0].dtype)
    for b, s in enumerate(seqs):
        out[b, :, : s.shape[1]] = s
    return out


def _dense(name, storage, lengths) -> GlobalTensor:
    return GlobalTensor(name, storage, (), storage.shape[1], lengths, lambda b, h, pos: (b, h, pos), storage.shape[3])


def _varlen(name, storage, lengths, cu) -> GlobalTensor:
    return GlobalTensor(name, storage, (), storage.shape[1], lengths, lambda b, h, pos: (cu[b] + pos, h),
                        storage.shape[2])


def _paged(name, cache, lengths, table, page) -> GlobalTensor:
    def in_table(b, pos):
        col = pos // page
        inside = col < table.shape[1]
        return inside & (table[b, col.clamp(max=table.shape[1] - 1)] >= 0)

    return GlobalTensor(name, cache, (), cache.shape[1], lengths,
                        lambda b, h, pos: (table[b, pos // page], h, pos % page), cache.shape[3], in_table)


def make_globals(problem: Problem, num_splits: int, qlen: int, out_dtype: torch.dtype,
                 ws_dtype: torch.dtype) -> dict[str, GlobalTensor]:
    """Q, K, V, O (and O_part, LSE for paged_decode), O and the workspace filled with NaN."""
    lq = torch.tensor(problem.seqlen_q, dtype=torch.int64)
    lk = torch.tensor(problem.seqlen_k, dtype=torch.int64)
    p, d = problem, problem.head_dim
    if not p.paged:
        out = _padded(p.q).to(out_dtype).fill_(float("nan"))
        return {"Q": _dense("Q", _padded(p.q), lq), "K": _dense("K", _padded(p.k), lk),
                "V": _dense("V", _padded(p.v), lk), "O": _dense("O", out, lq)}
    out = torch.full(p.q_varlen.shape, float("nan"), dtype=out_dtype)
    g = {"Q": _varlen("Q", p.q_varlen, lq, p.cu_seqlens_q), "O": _varlen("O", out, lq, p.cu_seqlens_q),
         "K": _paged("K", p.k_cache, lk, p.block_table, p.page_size),
         "V": _paged("V", p.v_cache, lk, p.block_table, p.page_size)}
    if p.op == "paged_decode":
        g["O_part"] = _workspace("O_part", (num_splits, p.batch, p.heads_q, qlen, d), lq, ws_dtype)
        g["LSE"] = _workspace("LSE", (num_splits, p.batch, p.heads_q, qlen), lq, ws_dtype)
    return g


def _workspace(name, shape, lengths, dtype) -> GlobalTensor:
    """Split-KV workspace [split, b, h, i (, D)], NaN until the split kernel writes it."""
    qlen = shape[3]
    return GlobalTensor(name, torch.full(shape, float("nan"), dtype=dtype), (shape[0],), shape[2], lengths,
                        lambda s, b, h, pos: (s, b, h, pos), shape[4] if len(shape) == 5 else None,
                        lambda b, pos: pos < qlen)


def outputs(problem: Problem, o: GlobalTensor) -> list[torch.Tensor]:
    """O per sequence as [Hq, Lq, D]."""
    if not problem.paged:
        return [o.storage[b, :, :lq] for b, lq in enumerate(problem.seqlen_q)]
    cu = problem.cu_seqlens_q
    return [o.storage[cu[b]:cu[b + 1]].transpose(0, 1) for b in range(problem.batch)]
