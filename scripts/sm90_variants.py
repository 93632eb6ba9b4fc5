#!/usr/bin/env python
"""Build named variants of the Hopper (sm_90a) programs into one kernel directory, for the GPU check
to time beside the shipped kernels (scripts/hopper_device.sh --kernels DIR):

    python scripts/sm90_variants.py --out registry-var [--only pers_g1,pers_gall] [--list]
        [--baseline qm_dense_prefill_sm90_attn_bf16_hd128,...]   # shipped kernels copied in from registry-sm90a

A variant is a shipped TL program with some params overridden for one head size (a `params when
D = ...` block put before its kernel, the program renamed `<program>_v_<variant>`) and, optionally,
macros set before the building blocks (e.g. the persistent scheduler's head-group budget). Each is
checked, lowered and compiled as `qimeng-serve build` does; ptxas spills are reported, not rejected.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TL_DIR = REPO / "kernels_src" / "tl"
NO_GROUPS = {"QM_SM90_L2_GROUP_BYTES": "0"}  # one (head, batch) at a time: query blocks fastest
ONE_GROUP = {"QM_SM90_L2_GROUP_BYTES": "(1ll << 62)"}  # every head at once: the last query blocks of all first
GROUP_NOT_CAUSAL = {"QM_SM90_GROUP_NOT_CAUSAL": "1"}  # L2 head groups, longest first, without a causal mask too

# name: (program, head size, param overrides, macros, dtypes). What each measured: docs/perf-notes.md
# "Hopper path, fourth run" (earlier variants are in this file's history).
VARIANTS = {
    # the shipped programs under a variant name: a rebuild timed beside the kernels of registry-sm90a/
    "shipped128": ("dense_prefill_sm90.tl", 128, {}, {}, ("bf16", "f16")),
    # session 18: carry=pv as one KV loop across the tiles (shipped at dense D 128 causal), at D 256 and in
    # the paged gather at D 128
    "carry256": ("dense_prefill_sm90.tl", 256, {"CARRY": 1}, {}, ("bf16", "f16")),
    "pcarry128": ("paged_prefill_sm90.tl", 128, {"CARRY": 1}, {}, ("bf16", "f16")),
    # split=tail: the last partial wave's tiles in parts along the keys (perf-notes "fifteenth run")
    "split128": ("dense_prefill_sm90.tl", 128, {"SPLIT": 1}, {}, ("bf16", "f16")),
    "split64": ("dense_prefill_sm90.tl", 64, {"SPLIT": 1}, {}, ("bf16", "f16")),
    "split256": ("dense_prefill_sm90.tl", 256, {"SPLIT": 1}, {}, ("bf16", "f16")),
    # at most 3 parts (every k above 3 measured slower in run 3)
    "split64_k3": ("dense_prefill_sm90.tl", 64, {"SPLIT": 3}, {}, ("bf16", "f16")),
    # the split's costs (timing only, O incomplete or wrong): no parts' store or combine; no combine;
    # and the candidate ordering without fences (the warp barrier and lane 0's acq_rel atomic)
    "split128_nostore": ("dense_prefill_sm90.tl", 128, {"SPLIT": 1}, {"QM_SM90_DIAG_SPLIT": "1"}, ("bf16",)),
    "split128_nocombine": ("dense_prefill_sm90.tl", 128, {"SPLIT": 1}, {"QM_SM90_DIAG_SPLIT": "2"}, ("bf16",)),
    "split128_nofence": ("dense_prefill_sm90.tl", 128, {"SPLIT": 1}, {"QM_SM90_SPLIT_FENCE": "0"}, ("bf16", "f16")),
    "split128_p16": ("dense_prefill_sm90.tl", 128, {"SPLIT": 1}, {"QM_SM90_SPLIT_PARTIAL16": "1"}, ("bf16", "f16")),
    # session 19: split=stream (SPLIT = -1), every CTA an equal run of the walk's KV steps without a mask;
    # CARRY = 0 so one kernel serves both masks (a causal launch does not share: the counter's claims)
    "stream128": ("dense_prefill_sm90.tl", 128, {"SPLIT": -1, "CARRY": 0}, {}, ("bf16", "f16")),
    # its cost apart (timing only, O incomplete): the parts stored but never merged. (Run 3's nostore,
    # nocombine and nofence timed the first, fp32 form at commit fbb4cdf: perf-notes "seventeenth run")
    "stream128_nostore": ("dense_prefill_sm90.tl", 128, {"SPLIT": -1, "CARRY": 0}, {"QM_SM90_DIAG_SPLIT": "1"},
                          ("bf16",)),
    "stream64": ("dense_prefill_sm90.tl", 64, {"SPLIT": -1}, {}, ("bf16", "f16")),
    "stream256": ("dense_prefill_sm90.tl", 256, {"SPLIT": -1}, {}, ("bf16", "f16")),
    # session 20: no overlap inside a warpgroup (cuDNN's D 128 loop: S GEMM, softmax, O += P V in turn, the two
    # warpgroups' GEMMs interleaved by ping-pong alone); the full-mask program as shipped otherwise
    "none128": ("dense_prefill_sm90.tl", 128, {"OVERLAP": 0, "CARRY": 0}, {}, ("bf16", "f16")),
    # session 20: FA3's D 128 register split (24 / 240) with 160-key KV tiles and the pinned softmax (session 7's
    # n160 was this at 40 / 232 and spilled in its loop), and at 128 keys
    "n160p24": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 160, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240,
                                               "CARRY": 0}, {}, ("bf16", "f16")),
    "n160p24t": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 160, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240,
                                                "CARRY": 0, "STORE_TMA": 1}, {}, ("bf16",)),
    "n144p24": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 144, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240,
                                               "CARRY": 0}, {}, ("bf16", "f16")),
    # the paged gather at D 128 with dense `_long`'s 144-key tiles (two stages), its own registers: spills 20 / 52 B
    # (past the build's 64 B), not timed
    "pn144": ("paged_prefill_sm90.tl", 128, {"BLOCK_N": 144, "STAGES": 2}, {}, ("bf16",)),
    # session 21: rescale=lazy (O rescaled only when a warp's running max grows by more than 8 log2 units), on in
    # the shipped dense program at D 128 and 256: the eager kernels it was timed against, and the lazy ones not shipped
    "eager128": ("dense_prefill_sm90.tl", 128, {"RESCALE": 0}, {}, ("bf16", "f16")),
    "eager256": ("dense_prefill_sm90.tl", 256, {"RESCALE": 0}, {}, ("bf16", "f16")),
    "lazy64": ("dense_prefill_sm90.tl", 64, {"RESCALE": 1}, {}, ("bf16", "f16")),
    # the paged program with it (run 2; shipped since: pg128 / pg64 / pg256 are now lazy, peager* the eager ones)
    "plazy128": ("paged_prefill_sm90.tl", 128, {"RESCALE": 1}, {}, ("bf16", "f16")),
    "plazy64": ("paged_prefill_sm90.tl", 64, {"RESCALE": 1}, {}, ("bf16", "f16")),
    "plazy256": ("paged_prefill_sm90.tl", 256, {"RESCALE": 1}, {}, ("bf16", "f16")),
    "peager128": ("paged_prefill_sm90.tl", 128, {"RESCALE": 0}, {}, ("bf16",)),
    # carry=pv without a mask again, now beside rescale=lazy (the sixteenth run timed it level with eager rescales)
    "carry128l": ("dense_prefill_sm90.tl", 128, {"CARRY": 1}, {}, ("bf16",)),
    "p24": ("dense_prefill_sm90.tl", 128, {"PRODUCER_REGS": 24, "CONSUMER_REGS": 240, "CARRY": 0}, {}, ("bf16",)),
    "d64": ("dense_prefill_sm90.tl", 64, {}, {}, ("bf16", "f16")),
    "d256": ("dense_prefill_sm90.tl", 256, {}, {}, ("bf16", "f16")),
    "paged128": ("paged_prefill_sm90.tl", 128, {}, {}, ("f16",)),
    "paged_pin": ("paged_prefill_sm90.tl", 128, {"OVERLAP": 2}, {}, ("bf16",)),
    # one tile per CTA (session 5's D 128 schedule, and D 64 without the counter)
    "grid128": ("dense_prefill_sm90.tl", 128, {"PERSISTENT": 0, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240}, {},
                ("bf16",)),
    "d64_grid": ("dense_prefill_sm90.tl", 64, {"PERSISTENT": 0}, {}, ("bf16",)),
    # tile orders: L2 head groups without a causal mask too; every head at once; causal one head at a time
    "pers_l2full": ("dense_prefill_sm90.tl", 128, {}, GROUP_NOT_CAUSAL, ("bf16",)),
    "d64_l2full": ("dense_prefill_sm90.tl", 64, {}, GROUP_NOT_CAUSAL, ("bf16",)),
    "pers_gall": ("dense_prefill_sm90.tl", 128, {}, ONE_GROUP, ("bf16",)),
    "pers_nogroups": ("dense_prefill_sm90.tl", 128, {}, NO_GROUPS, ("bf16",)),
    # every gridDim.x-th tile per CTA instead of the counter's claims (session 14: is our per-launch
    # spread at llama3.1-405b B 8 x 2k the dynamic claims?)
    "static128": ("dense_prefill_sm90.tl", 128, {}, {"QM_SM90_STATIC_TILES": "1"}, ("bf16",)),
    # session 7's runs 1-3 timed building-block changes as dec128 / dec64, pack128 / pack64 and fence128:
    # the shipped params under those names, as shipped128 / d64 are (the names are in their JSON)
    # wider KV tiles without a causal mask (FA3 picks 128 x 176 at D 128 and 192 x 128 / 192 at D 64 there):
    # fewer softmax passes and barrier waits per key, at two stages where three no longer fit. At 40 / 232
    # registers 128 x 176 spills 300 B (the second score tile of the overlap): FA3's 24 / 240
    "n176": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 176, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240},
             {}, ("bf16",)),
    "n176g": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 176, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240,
                                             "PERSISTENT": 0}, {}, ("bf16",)),
    # 160 keys at FA3's registers without the pinned softmax (OVERLAP = 1): S, P and O no longer live
    # together (session 8; n160 below is the pinned one at 40 / 232)
    "n176o1": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 176, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240,
                                              "OVERLAP": 1}, {}, ("bf16",)),
    "n160o1": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 160, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240,
                                              "OVERLAP": 1}, {}, ("bf16",)),
    "n192": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 192, "STAGES": 2, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240},
             {}, ("bf16",)),
    "n128s2": ("dense_prefill_sm90.tl", 128, {"STAGES": 2, "STORE_TMA": 0}, {}, ("bf16",)),
    "n160": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 160, "STAGES": 2}, {}, ("bf16",)),
    "n144": ("dense_prefill_sm90.tl", 128, {"BLOCK_N": 144, "STAGES": 2}, {}, ("bf16",)),
    "d64_n128": ("dense_prefill_sm90.tl", 64, {"BLOCK_N": 128}, {}, ("bf16",)),
    "d64_m128n176": ("dense_prefill_sm90.tl", 64, {"BLOCK_M": 128, "BLOCK_N": 176, "WARPS": 8, "CONSUMERS": 2,
                     "PRODUCER_REGS": 40, "CONSUMER_REGS": 232, "PINGPONG": 1, "OVERLAP": 2}, {}, ("bf16",)),
    "d64_m128": ("dense_prefill_sm90.tl", 64, {"BLOCK_M": 128, "BLOCK_N": 128, "WARPS": 8, "CONSUMERS": 2, "PRODUCER_REGS": 40,
                                          "CONSUMER_REGS": 232, "PINGPONG": 1, "OVERLAP": 2}, {}, ("bf16",)),
    # D 256 persistent: ptxas spills the overlapped loop at 232 consumer registers
    # 24 / 240: the producer spills 332 B (its tile claims), the KV loop none (32 / 240 asks for more
    # registers than the CTA launches with: the checker refuses it since it hung in run 7)
    # carry=pv: a tile's last O += P V issued with the next tile's first S GEMM, its store after that
    # tile's first softmax (session 8's tile-loop form; since session 18 the one KV loop across the tiles,
    # which the shipped program turns on at D 128 under a causal mask: this variant has it for both masks)
    "carry128": ("dense_prefill_sm90.tl", 128, {"CARRY": 1, "STAGES": 3, "STORE_TMA": 0}, {}, ("bf16", "f16")),
    # (session 8: at D 64 and 256 ptxas serialised every GMMA of the tile-loop form for want of registers,
    # C7512; the loop form compiles clean at D 256, carry256 above)
    "d256_pers24": ("dense_prefill_sm90.tl", 256, {"PERSISTENT": 1, "PRODUCER_REGS": 24, "CONSUMER_REGS": 240}, {},
                    ("bf16", "f16")),
    # O stored by TMA through a shared tile (session 9: D 64 3-7% slower, D 128 level; not shipped), and
    # the register store it was timed against (session 8's kernels, the shipped params again)
    "tma128": ("dense_prefill_sm90.tl", 128, {"STAGES": 2, "STORE_TMA": 1}, {}, ("bf16", "f16")),
    "tma64": ("dense_prefill_sm90.tl", 64, {"STORE_TMA": 1}, {}, ("bf16", "f16")),
    # session 22: the bulk store of O again on the `_full` kernel (its CARRY = 0; the causal kernel's carry=pv
    # refuses via=tma), beside its two-stage register-store control n128s2
    "tma128f": ("dense_prefill_sm90.tl", 128, {"STAGES": 2, "STORE_TMA": 1, "CARRY": 0}, {}, ("bf16", "f16")),
    "stg128": ("dense_prefill_sm90.tl", 128, {"STAGES": 3, "STORE_TMA": 0}, {}, ("bf16", "f16")),
    "stg64": ("dense_prefill_sm90.tl", 64, {"STORE_TMA": 0}, {}, ("bf16", "f16")),
    # diagnostic, O never written (time only, never validates): what the normalise-and-store epilogue costs
    "nostore128": ("dense_prefill_sm90.tl", 128, {"STAGES": 3, "STORE_TMA": 0}, {"QM_SM90_DIAG_NO_O_STORE": "1"},
                   ("bf16",)),
    "nostore64": ("dense_prefill_sm90.tl", 64, {"STORE_TMA": 0}, {"QM_SM90_DIAG_NO_O_STORE": "1"}, ("bf16",)),
    # paged prefill, session 10: each gathered stage arrives through cp.async.mbarrier.arrive.noinc (no
    # producer wait); the consumer fences the stage; diagnostics without that fence and without copies
    "pg128": ("paged_prefill_sm90.tl", 128, {}, {}, ("bf16",)),
    "pg64": ("paged_prefill_sm90.tl", 64, {}, {}, ("bf16",)),
    "pg256": ("paged_prefill_sm90.tl", 256, {}, {}, ("bf16",)),
    "pg128_nofence": ("paged_prefill_sm90.tl", 128, {}, {"QM_SM90_DIAG_GATHER_NO_FENCE": "1"}, ("bf16",)),
    "pg128_nocopy": ("paged_prefill_sm90.tl", 128, {}, {"QM_SM90_DIAG_NO_GATHER": "1"}, ("bf16",)),
    "pg256_n80": ("paged_prefill_sm90.tl", 256, {"BLOCK_N": 80, "PRODUCER_REGS": 56, "CONSUMER_REGS": 224}, {},
                  ("bf16",)),
    "pg256_n80o": ("paged_prefill_sm90.tl", 256, {"BLOCK_N": 80, "OVERLAP": 1, "PRODUCER_REGS": 56,
                                                  "CONSUMER_REGS": 224}, {}, ("bf16",)),
    "pg64_m192": ("paged_prefill_sm90.tl", 64, {"BLOCK_M": 192, "BLOCK_N": 96, "WARPS": 12, "CONSUMERS": 3,
                                                "PRODUCER_REGS": 56, "CONSUMER_REGS": 152}, {}, ("bf16",)),
    # the grid's query blocks from the last (causal: the longest tiles first; run 3, now the default), and
    # block-index order as a diagnostic
    "pg128_rev": ("paged_prefill_sm90.tl", 128, {}, {"QM_SM90_GRID_HEAVY_FIRST": "1"}, ("bf16",)),
    "pg64_rev": ("paged_prefill_sm90.tl", 64, {}, {"QM_SM90_GRID_HEAVY_FIRST": "1"}, ("bf16",)),
    "pg256_rev": ("paged_prefill_sm90.tl", 256, {}, {"QM_SM90_GRID_HEAVY_FIRST": "1"}, ("bf16",)),
    "pg128_fwd": ("paged_prefill_sm90.tl", 128, {}, {"QM_SM90_GRID_HEAVY_FIRST": "0"}, ("bf16",)),
    # candidate for the next run (not timed yet): lanes along one 64-column panel, each copying its unit
    # of every panel of a row from one address (QM_SM90_GATHER_PANELS)
    "pgp128": ("paged_prefill_sm90.tl", 128, {}, {"QM_SM90_GATHER_PANELS": "1"}, ("bf16",)),
    "pgp256": ("paged_prefill_sm90.tl", 256, {}, {"QM_SM90_GATHER_PANELS": "1"}, ("bf16",)),
    # candidate for the next run (not timed yet): one CTA per SM walking the tiles from the counter, the
    # gathering warpgroup told each tile by its leader (tiles=persistent)
    "pgpers128": ("paged_prefill_sm90.tl", 128, {"PERSISTENT": 1}, {}, ("bf16",)),
    "pgpers256": ("paged_prefill_sm90.tl", 256, {"PERSISTENT": 1}, {}, ("bf16",)),
    "pgpers64": ("paged_prefill_sm90.tl", 64, {"PERSISTENT": 1}, {}, ("bf16",)),
    # both: the panel lanes in the persistent gathering kernel
    "pgpp128": ("paged_prefill_sm90.tl", 128, {"PERSISTENT": 1}, {"QM_SM90_GATHER_PANELS": "1"}, ("bf16",)),
    "pgpp256": ("paged_prefill_sm90.tl", 256, {"PERSISTENT": 1}, {"QM_SM90_GATHER_PANELS": "1"}, ("bf16",)),
    # session 11: with the panel lanes and the persistent loop shipped, does the gathering producer fit
    # fewer registers, leaving the consumers dense's (D 128: 40 / 232 and the pinned softmax)?
    # the shipped params rebuilt (32-bit gather strides), timed beside registry-sm90a's cubins
    "pgs128": ("paged_prefill_sm90.tl", 128, {}, {}, ("bf16",)),
    "pgs256": ("paged_prefill_sm90.tl", 256, {}, {}, ("bf16",)),
    "pgr40o2": ("paged_prefill_sm90.tl", 128, {"PRODUCER_REGS": 40, "CONSUMER_REGS": 232, "OVERLAP": 2}, {}, ("bf16",)),
    "pgr40o1": ("paged_prefill_sm90.tl", 128, {"PRODUCER_REGS": 40, "CONSUMER_REGS": 232}, {}, ("bf16",)),
    "pgr40_256o1": ("paged_prefill_sm90.tl", 256, {"PRODUCER_REGS": 40, "CONSUMER_REGS": 232, "OVERLAP": 1}, {},
                    ("bf16",)),
    "pgr32_64": ("paged_prefill_sm90.tl", 64, {"PRODUCER_REGS": 32, "CONSUMER_REGS": 160}, {}, ("bf16",)),
    # prepared for session 12 (built, not timed): a deeper K/V ring, if the gather's latency (not its
    # throughput) is what the consumers wait on (run 6's profile should say which)
    "pg128_s4n96": ("paged_prefill_sm90.tl", 128, {"BLOCK_N": 96, "STAGES": 4}, {}, ("bf16",)),
    "pg64_s6": ("paged_prefill_sm90.tl", 64, {"STAGES": 6}, {}, ("bf16",)),
    # D 256 causal at 16k ran 3-5% slower persistent than on the grid (session 11, run 2): the grid runs
    # one head's K/V (16 MB) at a time, the persistent order a 2-head group (32 MB); a 16 MB group budget
    # gives the persistent kernel the grid's working set
    "pg256_l2g16": ("paged_prefill_sm90.tl", 256, {}, {"QM_SM90_L2_GROUP_BYTES": "(16ll << 20)"}, ("bf16",)),
    "pg256_grid": ("paged_prefill_sm90.tl", 256, {"PERSISTENT": 0}, {}, ("bf16",)),  # run 2's grid D 256, rebuilt
    # session 12, with the late claim: smaller causal L2 head groups (FA3's varlen scheduler budgets 8 MB
    # of K/V; ncu at D 256 8k causal: our L2 hit rate 77% against its 92%)
    "pg256_l2g8": ("paged_prefill_sm90.tl", 256, {}, {"QM_SM90_L2_GROUP_BYTES": "(8ll << 20)"}, ("bf16",)),
    # session 12: the overlapped loop at D 256 with a 64-key tile (S and the next S take 2 x 32 registers
    # instead of 2 x 40; ncu: the tensor pipe idles 27% of the time against FA3's 17%)
    "pg256_n64o": ("paged_prefill_sm90.tl", 256, {"BLOCK_N": 64, "OVERLAP": 1}, {}, ("bf16",)),
    # overlap=gemms (3): the S GEMM and the previous PV GEMM issued together, the softmax after both (run 6's
    # SASS sampling: the consumers' two GMMA waits a KV tile hold 22% of all stall samples)
    "pg256_gemms": ("paged_prefill_sm90.tl", 256, {"OVERLAP": 3}, {}, ("bf16",)),
    "pg256_pp": ("paged_prefill_sm90.tl", 256, {"PINGPONG": 1}, {}, ("bf16",)),
    "pg256_ppg": ("paged_prefill_sm90.tl", 256, {"PINGPONG": 1, "OVERLAP": 3}, {}, ("bf16",)),
    "pg128_gemms": ("paged_prefill_sm90.tl", 128, {"OVERLAP": 3}, {}, ("bf16",)),
    "pg64_gemms": ("paged_prefill_sm90.tl", 64, {"OVERLAP": 3}, {}, ("bf16",)),
    "dense256_gemms": ("dense_prefill_sm90.tl", 256, {"OVERLAP": 3}, {}, ("bf16",)),
    "pg128_l2g16": ("paged_prefill_sm90.tl", 128, {}, {"QM_SM90_L2_GROUP_BYTES": "(16ll << 20)"}, ("bf16",)),
    "pg128_p40": ("paged_prefill_sm90.tl", 128, {"PRODUCER_REGS": 40, "CONSUMER_REGS": 232}, {}, ("bf16",)),
    "pg128_o2": ("paged_prefill_sm90.tl", 128, {"PRODUCER_REGS": 40, "CONSUMER_REGS": 232, "OVERLAP": 2}, {},
                 ("bf16",)),
    "d256_pers": ("dense_prefill_sm90.tl", 256, {"PERSISTENT": 1, "PRODUCER_REGS": 40, "CONSUMER_REGS": 232}, {},
                  ("bf16",)),
    # session 15: D 64 without a causal mask (the shipped `_full` kernel is 192 x 128, gemms, 4 stages:
    # dense_prefill_sm90.tl's `params when D = 64 and CAUSAL = 0`); these override it for both masks
    "full64pp": ("dense_prefill_sm90.tl", 64, {"BLOCK_N": 128, "STAGES": 4, "OVERLAP": 3, "PINGPONG": 1}, {},
                 ("bf16",)),
    "full64none": ("dense_prefill_sm90.tl", 64, {"BLOCK_N": 144, "STAGES": 4, "OVERLAP": 0}, {}, ("bf16",)),
    "pfull64": ("paged_prefill_sm90.tl", 64, {"BLOCK_N": 112, "STAGES": 4, "OVERLAP": 3}, {}, ("bf16",)),
    # session 15, run 1: full64pp was ahead on both masks at every length (dense); paged with ping-pong
    "pg64pp112": ("paged_prefill_sm90.tl", 64, {"BLOCK_N": 112, "STAGES": 4, "OVERLAP": 3, "PINGPONG": 1}, {},
                  ("bf16",)),
    "pg64pp128": ("paged_prefill_sm90.tl", 64, {"BLOCK_N": 128, "STAGES": 4, "OVERLAP": 3, "PINGPONG": 1}, {},
                  ("bf16",)),
    # session 15: D 128 without the pinned softmax (gemms or softmax overlap, with ping-pong), and three
    # consumer warpgroups on 192-row tiles with narrow KV tiles (what D 64's winner has, at D 128)
    "d128gpp": ("dense_prefill_sm90.tl", 128, {"OVERLAP": 3}, {}, ("bf16",)),
    "d128spp": ("dense_prefill_sm90.tl", 128, {"OVERLAP": 1}, {}, ("bf16",)),
    "d128c3n64": ("dense_prefill_sm90.tl", 128, {"BLOCK_M": 192, "BLOCK_N": 64, "WARPS": 12, "CONSUMERS": 3,
                                                  "STAGES": 4, "PRODUCER_REGS": 32, "CONSUMER_REGS": 160,
                                                  "OVERLAP": 3}, {}, ("bf16",)),
    "d128c3n80": ("dense_prefill_sm90.tl", 128, {"BLOCK_M": 192, "BLOCK_N": 80, "WARPS": 12, "CONSUMERS": 3,
                                                  "STAGES": 3, "PRODUCER_REGS": 32, "CONSUMER_REGS": 160,
                                                  "OVERLAP": 3}, {}, ("bf16",)),
    # session 16: timing only (the output is incomplete): the last count % 132 tiles dropped, what the
    # last wave costs the shipped D 128 (scripts/sm90_variants.py's defines reach scheduler.cuh)
    "skiptail128": ("dense_prefill_sm90.tl", 128, {}, {"QM_SM90_DIAG_SKIP_TAIL": "1"}, ("bf16",)),
}


# session 21: three consumer warpgroups on 192-row tiles at D 128 (D 64's shape), 32 / 160 registers, offline only:
# at 128 and 96 keys the checker refuses them (about 178 and 162 registers); at 80 and 64 they compile clean but take
# 4.8-5.1 KV-loop instructions a key per warpgroup against the shipped 4.2 (perf-notes "nineteenth run"). OVERLAP 0:
# S GEMM, softmax, O += P V in turn; 3: the S and the previous PV GEMM issued together
for _n, _stages in ((128, 2), (96, 3), (80, 3), (64, 4)):
    for _overlap in (0, 3):
        VARIANTS[f"m192n{_n}o{_overlap}"] = (
            "dense_prefill_sm90.tl", 128, {"BLOCK_M": 192, "BLOCK_N": _n, "WARPS": 12, "CONSUMERS": 3, "STAGES": _stages,
                                           "PRODUCER_REGS": 32, "CONSUMER_REGS": 160, "OVERLAP": _overlap, "CARRY": 0},
            {}, ("bf16", "f16"))


def variant_text(base: str, name: str, head_dim: int, overrides: dict) -> str:
    """The base program renamed, with the overrides in a `params when D = head_dim` block before its kernel."""
    text, n = re.subn(r"^program (\w+)$", lambda m: f"program {m.group(1)}_v_{name}", base, count=1, flags=re.MULTILINE)
    if n != 1:
        raise SystemExit("the base program has no `program NAME` line")
    if overrides:
        block = f"params when D = {head_dim} {{\n" + "".join(f"  {k} = {v}\n" for k, v in overrides.items()) + "}\n\n"
        at = re.search(r"^kernel ", text, flags=re.MULTILINE)
        if at is None:
            raise SystemExit("the base program has no kernel")
        text = text[: at.start()] + block + text[at.start():]
    return text


def build(out: Path, names: list[str]) -> None:
    from qimeng_serve.lower.sm90_build import INDEX, build_sm90_kernels

    out.mkdir(parents=True, exist_ok=True)
    index_path = out / INDEX
    index = json.loads(index_path.read_text()) if index_path.exists() else {
        "schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    with tempfile.TemporaryDirectory(prefix="qimeng-variants-") as tmp:
        for name in names:
            program, head_dim, overrides, defines, dtypes = VARIANTS[name]
            tl = Path(tmp) / f"{Path(program).stem}_v_{name}.tl"
            tl.write_text(variant_text((TL_DIR / program).read_text(), name, head_dim, overrides))
            part = Path(tmp) / name
            built = build_sm90_kernels(part, dtypes=dtypes, head_dims=(head_dim,), programs=[(str(tl), None, None)],
                                       defines=defines)
            for entry, meta in built["kernels"].items():
                shutil.copy(part / f"{entry}.cubin", out / f"{entry}.cubin")
                shutil.copy(part / f"{entry}.cu", out / f"{entry}.cu")
                index["kernels"][entry] = {**meta, "variant": name}
                ptxas = meta.get("ptxas") or {}
                print(f"{entry}: {ptxas.get('registers')} registers, spills {ptxas.get('spill_stores')}/"
                      f"{ptxas.get('spill_loads')} B")
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def copy_baseline(out: Path, source: Path, names: list[str]) -> None:
    """Shipped kernels (from a `build_sm90_kernels` directory) beside the variants, timed in the same run."""
    from qimeng_serve.lower.sm90_build import INDEX

    shipped = json.loads((source / INDEX).read_text())["kernels"]
    missing = [n for n in names if n not in shipped]
    if missing:
        raise SystemExit(f"not in {source}: {', '.join(missing)}")
    index = json.loads((out / INDEX).read_text())
    for name in names:
        shutil.copy(source / f"{name}.cubin", out / f"{name}.cubin")
        index["kernels"][name] = shipped[name]
    (out / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "registry-var")
    ap.add_argument("--only", help="variant names, comma-separated (default: all; none: only --baseline)")
    ap.add_argument("--list", action="store_true", help="print the variants and stop")
    ap.add_argument("--baseline", help="shipped kernel names to copy in beside the variants (comma-separated)")
    ap.add_argument("--baseline-from", type=Path, default=REPO / "registry-sm90a")
    args = ap.parse_args()
    if args.list:
        for name, (program, d, over, defs, dtypes) in VARIANTS.items():
            print(f"{name:12s} {program} D={d} {over} {defs} {','.join(dtypes)}")
        return 0
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS and names != ["none"]]
    if unknown:
        raise SystemExit(f"unknown variants: {', '.join(unknown)} (--list shows them)")
    if names != ["none"]:
        build(args.out, names)
    if args.baseline:
        copy_baseline(args.out, args.baseline_from, args.baseline.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
