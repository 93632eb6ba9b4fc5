"""scripts/sm90_schedule_sim.py judges the persistent kernels' tile claims by simulating the order of
`qm::sm90::TileScheduler`; a host program built with nvcc (no GPU) prints the kernel's own order, which
must be the simulation's, tile for tile. And the simulation's two claim points: the same makespan when
every tile costs the same, the early claim behind the late one under a causal mask."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

from tests.conftest import REPO, build_host_program

spec = importlib.util.spec_from_file_location("sm90_schedule_sim", REPO / "scripts" / "sm90_schedule_sim.py")
sim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sim)

# (m_blocks, heads, batch, kv_len, head_dim, causal): whole and partial last groups, one-head groups,
# and the non-causal order (one (head, batch) at a time)
CASES = [(16, 8, 8, 2048, 256, True), (64, 8, 2, 8192, 256, True), (128, 8, 1, 16384, 256, True),
         (11, 32, 8, 2048, 64, True), (5, 3, 7, 3000, 128, True), (16, 16, 8, 2048, 128, False)]

HARNESS = r"""
#include <cstdio>
#include "qimeng/sm90/scheduler.cuh"
int main() {
  const int cases[][6] = {CASES};
  for (const auto& c : cases) {
    const qm::sm90::TileScheduler s(c[0], c[1], c[2], c[3], c[4] * 2, c[5] != 0);
    printf("case %d %d\n", s.group, s.count);
    for (int t = 0; t < s.count; ++t) {
      const qm::sm90::Tile tile = s.at(t);
      printf("%d %d %d\n", tile.m_block, tile.head, tile.batch);
    }
  }
  return 0;
}
"""


@pytest.mark.nvcc
def test_the_simulated_order_is_the_kernels(tmp_path):
    source = tmp_path / "order.cu"
    source.write_text(HARNESS.replace("CASES", ", ".join("{%d, %d, %d, %d, %d, %d}" % (*c[:5], int(c[5]))
                                                         for c in CASES)))
    exe = build_host_program(source, tmp_path / "order")
    run = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60)
    blocks = run.stdout.split("case ")[1:]
    assert len(blocks) == len(CASES)
    for (m_blocks, heads, batch, kv_len, d, causal), block in zip(CASES, blocks):
        lines = block.strip().splitlines()
        group, count = map(int, lines[0].split())
        expected_group = sim.group_size(kv_len, d, heads * batch) if causal else 1
        assert (group, count) == (expected_group, m_blocks * heads * batch)
        kernel = [tuple(map(int, line.split())) for line in lines[1:]]
        simulated = [(m, pair % heads, pair // heads) for m, pair in sim.tile_order(m_blocks, heads, batch, group)]
        assert kernel == simulated
        assert sorted(kernel) == sorted((m, h, b) for m in range(m_blocks) for h in range(heads)
                                        for b in range(batch))  # every tile once


def test_the_claim_point_matters_only_when_tiles_differ():
    assert sim.makespan([5] * 1000, 132, early=True) == pytest.approx(sim.makespan([5] * 1000, 132, early=False))
    # D 256, B 2 x 8k causal with 32 MB groups: run 1 of session 12 measured the late claim 7.7% faster
    tiles = sim.tile_order(64, 8, 2, sim.group_size(8192, 256, 16))
    costs = sim.causal_costs(tiles, 8192, 128, 80, overhead=2)
    early, late = sim.makespan(costs, 132, early=True), sim.makespan(costs, 132, early=False)
    assert late < 1.01 < 1.05 < early
    assert late >= 1.0  # nothing beats the ideal
