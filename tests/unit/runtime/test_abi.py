"""The ctypes AttnParams matches params.cuh field for field (compiled with the host compiler)."""

import ctypes
import shutil
import subprocess

import pytest

from qimeng_serve.runtime.abi import ABI_SIZE, AttnParams
from qimeng_serve.runtime.formula import evaluate
from tests.conftest import REPO

HEADER = REPO / "kernels_src" / "include" / "qimeng" / "params.cuh"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to read the C++ layout")
def test_offsets_match_the_header(tmp_path):
    names = [name for name, _ in AttnParams._fields_]
    src = tmp_path / "off.cpp"
    src.write_text(f'#include "{HEADER}"\n#include <cstdio>\nint main() {{\n'
                   + "".join(f'  std::printf("{n} %zu\\n", offsetof(qm::AttnParams, {n}));\n' for n in names)
                   + '  std::printf("sizeof %zu\\n", sizeof(qm::AttnParams));\n}\n')
    exe = tmp_path / "off"
    subprocess.run(["g++", "-std=c++17", "-x", "c++", str(src), "-o", str(exe)], check=True)
    lines = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True).stdout.splitlines())
    for name in names:
        assert int(lines[name]) == getattr(AttnParams, name).offset, name
    assert int(lines["sizeof"]) == ctypes.sizeof(AttnParams) == ABI_SIZE


@pytest.mark.parametrize("formula, values, want", [
    ("cdiv(max_seq_q, 128)", {"max_seq_q": 300}, 3),
    ("heads_kv", {"heads_kv": 8}, 8),
    ("cdiv(max_seq_k, 512)", {"max_seq_k": 512}, 1),
    ("select(0, 1, 2) + (7 - 10) / 2", {}, 0),  # TL's / floors: -3 / 2 = -2
])
def test_launch_formulas(formula, values, want):
    assert evaluate(formula, values) == want


def test_launch_formula_names_what_is_missing():
    with pytest.raises(KeyError, match="needs `batch`"):
        evaluate("batch", {})


def test_persistent_kernels_get_a_third_parameter_the_tile_counter():
    """A tiles=persistent sm90a kernel is `(AttnParams, TmaDescs, int* tile_counter)`: the launch array
    holds three pointers, the third to the counter's device address; the other kernels keep two."""
    from qimeng_serve.lower.emit_sm90 import KERNEL_ABI, PERSISTENT_ABI, RETIRING_ABI, SPLIT_ABI
    from qimeng_serve.runtime import launch as launch_mod
    from qimeng_serve.runtime.tma_sm90 import TmaDescs, launch_args

    assert (launch_mod.TMA_ABI, launch_mod.PERSISTENT_ABI, launch_mod.RETIRING_ABI, launch_mod.SPLIT_ABI) == \
        (KERNEL_ABI, PERSISTENT_ABI, RETIRING_ABI, SPLIT_ABI)
    assert set(launch_mod.SM90_ABIS) == {KERNEL_ABI, PERSISTENT_ABI, RETIRING_ABI, SPLIT_ABI}
    params, descs = AttnParams(), TmaDescs()
    two, keep2 = launch_args(params, descs)
    assert len(two) == 2 and two[0] == ctypes.addressof(params) and two[1] == ctypes.addressof(descs)
    three, keep3 = launch_args(params, descs, 0x7F0012345600)
    assert len(three) == 3 and three[:2] == two[:2]
    assert ctypes.c_void_p.from_address(three[2]).value == 0x7F0012345600
    assert keep3[2] is not None and len(keep2) == 2  # the counter's holder stays alive with the array
