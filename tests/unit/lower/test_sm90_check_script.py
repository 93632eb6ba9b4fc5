"""scripts/hopper_check.py without a GPU: it records the missing GPU as a failed step, still builds
the kernels into its directory, writes its JSON report, and exits non-zero; its validation cases
cover the lengths, GQA ratios and masks the brief asks for."""

import importlib.util
import json

import pytest

from qimeng_serve.build.toolchain import ToolchainError, find_toolchain
from tests.conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("hopper_check", REPO / "scripts" / "hopper_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_shapes_parse_or_stop_the_run():
    """--shapes BxHxL,...: (batch, heads, length) rows; a malformed entry stops before any GPU work."""
    hc = load_script()
    assert hc._parse_shapes("4x33x2048,16X16x1024,") == [(4, 33, 2048), (16, 16, 1024)]
    assert hc._parse_shapes("") == []
    for bad in ("4x33", "4x0x2048", "ax33x2048", "4x33x2048x1"):
        with pytest.raises(SystemExit, match="BxHxL"):
            hc._parse_shapes(bad)


def test_the_default_build_covers_every_schedule():
    from qimeng_serve.lower.sm90_build import GOLDEN_SM90

    assert [g[0] for g in GOLDEN_SM90] == ["dense_prefill_sm90.tl", "dense_prefill_sm90_pingpong.tl",
                                          "dense_prefill_sm90_overlap.tl", "dense_prefill_sm90_fa3.tl",
                                          "paged_prefill_sm90_pagetma.tl"]
    assert all((REPO / "kernels_src" / "tl" / g[0]).is_file() for g in GOLDEN_SM90)


def test_validation_cases_cover_the_required_shapes():
    cases = load_script().validation_cases(quick=False)
    assert {lq for _, lq, lk, *_ in cases if lq == lk} >= {1, 17, 127, 128, 129, 1000, 4099}
    assert {g for *_, g, _, _ in cases} == {1, 4, 8}
    assert {c for *_, c, _ in cases} == {True, False}
    assert any(lk > lq for _, lq, lk, *_ in cases) and any(w for *_, w in cases)


def test_runs_to_a_report_without_a_gpu(tmp_path):
    try:
        find_toolchain()
    except ToolchainError as exc:
        pytest.skip(f"no CUDA toolchain: {exc}")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this test is about the CPU-only path")
    kernels, out = tmp_path / "kernels", tmp_path / "out"
    rc = load_script().main(["--kernels", str(kernels), "--out", str(out), "--dtypes", "bf16", "--head-dims", "64",
                             "--programs", "dense_prefill_sm90_pingpong.tl", "--no-bench"])
    assert rc == 1
    report = json.loads((out / "hopper_check.json").read_text())
    assert report["steps"]["environment"]["ok"] is False and "sm_90" in report["steps"]["environment"]["error"]
    assert report["steps"]["build"]["ok"] is True
    index = json.loads((kernels / "index.json").read_text())
    assert set(index["kernels"]) == {"qm_dense_prefill_sm90_pingpong_attn_bf16_hd64"}
    for name, meta in index["kernels"].items():
        assert meta["abi"] == "attn_params+tma_descs" and meta["ptxas"]["spill_stores"] == 0
        assert meta["sass"]["HGMMA"] > 0 and meta["sass"]["UTMALDG"] > 0
        assert (kernels / f"{name}.cubin").stat().st_size > 0
    assert "FAILED] environment" in (out / "hopper_check.log").read_text()


def load_trace():
    spec = importlib.util.spec_from_file_location("sm90_trace", REPO / "scripts" / "sm90_trace.py")
    trace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trace)
    return trace


@pytest.mark.parametrize("d, persistent", [(256, False), (256, True), (128, True), (64, True)])
def test_trace_marks_find_their_places_in_the_shipped_kernel(d, persistent):
    """scripts/sm90_trace.py inserts its timestamp marks after anchor lines of a generated kernel (the
    shipped program, tiles=persistent at every head size; with PERSISTENT = 0 for one tile per CTA).
    Each anchor must match exactly one line, so a lowering change cannot silently move or drop a mark;
    the marked source includes the trace header, keeps every original line, and indexes a persistent
    kernel's rows by tile."""
    import re

    from qimeng_serve.lower.emit_sm90 import lower_sm90
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl

    trace = load_trace()
    source = (REPO / "kernels_src" / "tl" / trace.PROGRAM).read_text()
    if not persistent:
        assert "  PERSISTENT = 1\n" in source
        source = source.replace("  PERSISTENT = 1\n", "  PERSISTENT = 0\n")
    program = parse_tl(source)
    # the kernel for calls without a mask, which the trace times (D = 128's causal one carries across tiles)
    text = lower_sm90(program, get_target("sm_90"), AttentionSpec("dense_prefill", "bf16", d, 1, False)).text
    assert trace.is_persistent(text) == persistent
    marked = trace.with_marks(text)
    assert "#include <qimeng/sm90/trace.cuh>" in marked
    marks = sorted(int(m) for m in re.findall(r"trace_(?:mark|put)\((\d+)", marked))
    # every slot the report reads, once: 0 (CTA start) for one-tile CTAs, 11 (tile taken) for persistent ones
    assert marks == (list(range(1, 12)) if persistent else list(range(11)))
    # a persistent kernel's rows: the tile's place in the grid (a packed tile word is no row number)
    rows = set(re.findall(r"trace_mark\(\d+, ([^)]+\))\)", marked)) if persistent else \
        set(re.findall(r"trace_mark\(\d+, ([^)]+)\)", marked))
    assert rows == ({"qm::sm90::trace_row(tile, tiles)"} if persistent else {"-1"})
    if persistent:  # the moment it took the tile, stored under that row once the tile is unpacked
        took, put = marked.index("const qm::sm90::TraceStamp took = qm::sm90::trace_stamp();"), \
            marked.index("qm::sm90::trace_put(11, qm::sm90::trace_row(tile, tiles), took);")
        assert marked.index("if (tile_t < 0) break;") < took < marked.index("word.unpack(tile_t, tiles);") < put
    kept = [line for line in marked.splitlines() if "trace" not in line]
    assert kept == text.splitlines()
    # an anchor that no longer matches is an error, not a missing mark
    with pytest.raises(SystemExit, match="found 0 times"):
        trace.with_marks(text.replace("c.normalize_and_store", "c.store_o"))


def test_trace_analysis_of_one_tile_ctas_and_of_persistent_tiles():
    """The report's arithmetic on hand-made rows (ns): intervals between marks, and the cost between
    tiles, per SM for one-tile CTAs and per CTA for a persistent kernel."""
    trace = load_trace()

    def row(t0, sm, cta, q_issued=None):
        r = [0] * 32
        marks = {0: t0, 1: q_issued if q_issued is not None else t0 + 100, 2: t0 + 1000, 3: t0 + 1500,
                 4: t0 + 2200, 5: t0 + 9000, 9: t0 + 9100, 10: t0 + 9500, 7: t0 + 10300, 8: t0 + 10500}
        for slot, ns in marks.items():
            r[slot] = ns
        r[trace.SLOT_SM], r[trace.SLOT_CTA] = sm, cta
        return r

    # two CTAs on SM 3 (the second starts 400 ns after the first's last store), one on SM 4
    grid = trace.analyse([row(0, 3, 0), row(10900, 3, 1), row(50, 4, 2)], persistent=False)
    assert grid["intervals_us"]["Q landed after CTA start"]["median"] == 1.0
    assert grid["intervals_us"]["normalise and store O"]["median"] == pytest.approx(0.8)
    assert grid["between_tiles_us"]["median"] == pytest.approx(0.4)
    assert grid["span_us"] == (10900 + 10500) / 1e3
    # SM 4 finished at 10.55 us, SM 3 at 21.4; inside tiles 10.5 + 10.5 + 10.5 of 2 x 21.4 us
    assert grid["last_store_per_worker_us"] == {"min": pytest.approx(10.55), "median": pytest.approx((10.55 + 21.4) / 2),
                                                "max": pytest.approx(21.4)}
    assert grid["busy_share"] == pytest.approx(3 * 10.5 / (2 * 21.4))
    # persistent: CTA 7 runs two tiles; the second's Q was loaded during the first (ready 200 ns
    # before the first tile's last store), so the cost between them is negative
    first = row(0, 5, 7)
    second = row(9300, 5, 7, q_issued=8000)  # Q there at 10300, the first tile's last store at 10500
    pers = trace.analyse([first, second], persistent=True)
    assert pers["intervals_us"]["Q landed after its copy was issued"]["median"] == pytest.approx(1.6)
    assert pers["between_tiles_us"]["median"] == pytest.approx(-0.2)


def test_every_variant_is_the_shipped_program_with_its_overrides():
    """scripts/sm90_variants.py: each variant's TL text parses, is renamed `<program>_v_<name>`, and
    for its head size reads exactly its overrides on top of the shipped program's params (other head
    sizes keep theirs); its macros name switches the building blocks define."""
    spec = importlib.util.spec_from_file_location("sm90_variants", REPO / "scripts" / "sm90_variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    from qimeng_serve.tl.parser import parse_tl

    headers = "".join((REPO / "kernels_src" / "include" / "qimeng" / "sm90" / f).read_text()
                      for f in ("scheduler.cuh", "pipeline.cuh", "consumer.cuh", "split.cuh"))
    for name, (program, d, overrides, macros, dtypes) in variants.VARIANTS.items():
        base_text = (variants.TL_DIR / program).read_text()
        base, var = parse_tl(base_text), parse_tl(variants.variant_text(base_text, name, d, overrides))
        assert var.name == f"{base.name}_v_{name}"
        want = {k: print_value(p) for k, p in base.param_exprs({"D": d}).items()}
        want.update({k: str(v) for k, v in overrides.items()})
        assert {k: print_value(p) for k, p in var.param_exprs({"D": d}).items()} == want, name
        other = 64 if d != 64 else 128
        assert {k: print_value(p) for k, p in var.param_exprs({"D": other}).items()} == \
            {k: print_value(p) for k, p in base.param_exprs({"D": other}).items()}, name
        assert all(f"#ifndef {m}" in headers or f"#ifdef {m}" in headers for m in macros), name
        assert set(dtypes) <= {"f16", "bf16"}


def print_value(param) -> str:
    from qimeng_serve.tl.printer import print_expr

    return print_expr(param.value)
