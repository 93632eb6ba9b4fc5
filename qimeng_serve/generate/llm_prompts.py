"""The LLM generator's prompts: versioned templates (prompts/*.v1.md) filled from the project's own sources.

What goes into them: the TL reference (docs/tl.md), the target profile (targets.py), the spec,
one golden TL program of *another* kernel family (kernels_src/tl/), and for stage 2 the
building-block headers and the deterministic lowering of that other program. Changing a template
means a new version (sketch.v2.md ...) and PROMPT_VERSION, so cached replies of the old prompts are
never taken for the new ones.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template

from qimeng_serve.env import REPO_ROOT
from qimeng_serve.errors import QimengError
from qimeng_serve.spec import AttentionSpec
from qimeng_serve.targets import Target
from qimeng_serve.tl import ast
from qimeng_serve.tl.parser import parse_tl_file
from qimeng_serve.tl.printer import print_tl

PROMPT_VERSION = "v1"
TL_REFERENCE = REPO_ROOT / "docs" / "tl.md"
GOLDEN_DIR = REPO_ROOT / "kernels_src" / "tl"
HEADERS_DIR = REPO_ROOT / "kernels_src" / "include" / "qimeng"
# The example family shown for each op: another family, so the model cannot copy its answer.
EXAMPLE_FAMILY = {"dense_prefill": "paged_prefill", "paged_prefill": "dense_prefill", "paged_decode": "paged_prefill"}


@cache
def template(name: str) -> Template:
    text = resources.files("qimeng_serve.generate").joinpath("prompts", f"{name}.{PROMPT_VERSION}.md").read_text()
    return Template(text)


def _read(path: Path, what: str) -> str:
    if not path.is_file():
        raise QimengError(f"{what} is missing: {path}",
                          fix="the LLM generator sends it from a source checkout: install qimeng-serve with "
                              "`pip install -e .` from a git clone")
    return path.read_text()


# ------------------------------------------------------------------ pieces
def sketch_form(program: ast.Program) -> ast.Program:
    """The program without its params blocks and `with` options: the statements only (docs/tl.md, two forms)."""

    def strip(s):
        if isinstance(s, ast.Loop):
            return dataclasses.replace(s, options=(), body=tuple(strip(b) for b in s.body))
        if isinstance(s, (ast.Allocate, ast.Copy, ast.Compute, ast.Reshape)):
            return dataclasses.replace(s, options=())
        return s

    items = []
    for item in program.items:
        if isinstance(item, ast.ParamsBlock):
            continue
        if isinstance(item, ast.Kernel):
            item = dataclasses.replace(item, body=tuple(strip(s) for s in item.body))
        items.append(item)
    return ast.Program(tuple(items))


def describe_target(target: Target) -> str:
    mma = "; ".join(f"{dt}: {', '.join(shapes)}" for dt, shapes in target.mma.items())
    features = [name for name, has in (("ldmatrix", target.ldmatrix), ("cp.async", target.cp_async),
                                       ("TMA", target.tma), ("GMMA", target.gmma)) if has]
    return "\n".join([
        f"- arch `{target.arch}` ({target.family}; e.g. {', '.join(target.examples)})",
        f"- shared memory per CTA: {target.smem_default // 1024} KB default, {target.smem_optin_max // 1024} KB opt-in maximum",
        f"- registers: {target.regs_per_sm} per SM, at most {target.max_regs_per_thread} per thread",
        f"- tensor-core MMA shapes (`mma=`) per input dtype: {mma}",
        f"- copy paths (`via=`): {', '.join(target.copy_paths())}",
        f"- features: {', '.join(features) or 'none'}",
    ])


def describe_spec(spec: AttentionSpec) -> str:
    consts = ", ".join(f"{k} = {v}" for k, v in spec.constants().items())
    lines = [
        f"- op `{spec.op}`, input dtype {spec.dtype}, head size D = {spec.head_dim}",
        (f"- GQA group {spec.gqa_group} (query heads per KV head), causal: {'yes' if spec.causal else 'no'}, "
         f"sliding window: {spec.sliding_window or 'none'}, logits soft-cap: {spec.softcap or 'none'}"),
    ]
    if spec.op == "paged_decode":
        lines.append(f"- up to {spec.decode_query_len} query token(s) per sequence (QLEN)")
    lines.append(f"- spec constants: {consts}")
    return "\n".join(lines)


def program_name(spec: AttentionSpec, target: Target) -> str:
    return f"llm_{spec.op}_{target.arch.replace('_', '')}"


def example_program(spec: AttentionSpec, target: Target) -> tuple[str, ast.Program]:
    """A golden program of another family for this target (or, for a target no golden declares, the newest class)."""
    family = EXAMPLE_FAMILY[spec.op]
    paths = sorted(GOLDEN_DIR.glob(f"{family}_*.tl"))
    if not paths:
        raise QimengError(f"no golden {family} TL program in {GOLDEN_DIR}",
                          fix="run from a qimeng-serve source checkout (kernels_src/tl/)")
    programs = [(p, parse_tl_file(p)) for p in paths]
    for path, program in programs:
        if target.arch in program.targets:
            return path.stem, program
    path, program = programs[-1]  # *_sm80: the class that sm_90 and newer build on
    return path.stem, program


def _body(text: str) -> str:
    """Text to place inside a fenced block of a template: no trailing newline before the closing fence."""
    return text.rstrip("\n")


# ------------------------------------------------------------------ the requests
def system_prompt() -> str:
    return template("system").substitute(tl_reference=_read(TL_REFERENCE, "the TL reference docs/tl.md").strip())


def sketch_request(spec: AttentionSpec, target: Target) -> str:
    name, example = example_program(spec, target)
    return template("sketch").substitute(
        target=describe_target(target), spec=describe_spec(spec), example_name=name, example_op=example.op,
        op=spec.op, example=_body(print_tl(sketch_form(example))),
        program_name=program_name(spec, target), arch=target.arch)


def params_request(spec: AttentionSpec, target: Target, sketch_text: str) -> str:
    _, example = example_program(spec, target)
    return template("params").substitute(
        arch=target.arch, smem_kb=target.smem_optin_max // 1024, max_regs=target.max_regs_per_thread,
        target=describe_target(target), spec=describe_spec(spec), sketch=_body(sketch_text),
        example=_body(print_tl(example)))


def translate_request(spec: AttentionSpec, target: Target, program_text: str, entries: str, flags: str,
                      example_cuda: str) -> str:
    headers = []
    for path in sorted(HEADERS_DIR.glob("*.cuh")):
        headers.append(f"### qimeng/{path.name}\n```cuda\n{_body(path.read_text())}\n```")
    if not headers:
        raise QimengError(f"no building-block headers in {HEADERS_DIR}",
                          fix="run from a qimeng-serve source checkout (kernels_src/include/qimeng/)")
    return template("translate").substitute(
        entries=entries, flags=flags, target=describe_target(target), spec=describe_spec(spec),
        program=_body(program_text), example_cuda=_body(example_cuda), headers="\n\n".join(headers))


def repair_request(gate: str, message: str, instruction: str) -> str:
    return template("repair").substitute(gate=gate, message=message.rstrip("\n"), instruction=instruction).rstrip() + "\n"
