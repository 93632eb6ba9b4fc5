"""(c) End to end: vLLM's LLM(...) on a tiny random-weight Llama, qimeng against TRITON_ATTN.

Three prompts (16,500, 1,500 and 40 tokens) are generated greedily (24 tokens each) with
max_num_batched_tokens=4096, so the long prompt is prefilled in chunks over cached context while
the short ones already decode: mixed batches, chunked prefill, decode over a 16k context. Runs,
each in its own process: TRITON_ATTN eager (the reference), qimeng eager, qimeng with vLLM's default
compilation and CUDA graphs, qimeng eager with VLLM_WORKER_MULTIPROC_METHOD=spawn, and optionally
qimeng eager serving the sm_75 (Turing) bundle through its PTX (QIMENG_CAPABILITY=7.5).

A qimeng run passes when its engine log shows the plugin serving attention, every prompt's tokens
equal the reference's (or first differ where the reference's top two tokens are within 0.1 nats, a
tie no kernel can be blamed for), and the prompt log-probabilities (every position of every prompt:
the prefill path) stay within 0.15 (max) and 0.02 (mean) of the reference's.

    python3 scripts/vllm_gpu/e2e.py --model MODEL_DIR --out OUT/vllm_e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from common import step_result

PROMPT_LENS = (16500, 1500, 40)
MAX_MODEL_LEN = 17408
NEAR_TIE = 0.1
PROMPT_LOGPROB_MAX, PROMPT_LOGPROB_MEAN = 0.15, 0.02
SERVING_MARK = "qimeng-serve: serving attention with"
RUNS = (  # name, backend ("qimeng" = the plugin's name on this vLLM), enforce_eager, extra environment
    ("triton_eager", "TRITON_ATTN", True, {}),
    ("qimeng_eager", "qimeng", True, {}),
    ("qimeng_graphs", "qimeng", False, {}),
    ("qimeng_spawn", "qimeng", True, {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"}),
    # Turing's sm_75 kernels through their PTX on this GPU (needs an sm_75 f16 bundle in the registry)
    ("qimeng_sm75_eager", "qimeng", True, {"QIMENG_CAPABILITY": "7.5"}),
)
DEFAULT_RUNS = "triton_eager,qimeng_eager,qimeng_graphs,qimeng_spawn"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="model folder (make_tiny_llama.py)")
    ap.add_argument("--out", type=Path, default=Path("vllm_e2e.json"))
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--runs", default=DEFAULT_RUNS,
                    help=f"comma-separated, from: {', '.join(r[0] for r in RUNS)} (default: {DEFAULT_RUNS})")
    ap.add_argument("--run", help=argparse.SUPPRESS)  # internal: one LLM run in this process
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        one_run(args)
        return
    with step_result(args.out, "e2e", model=str(args.model), prompt_lens=list(PROMPT_LENS)) as result:
        orchestrate(result, args)


def prompts() -> list[list[int]]:
    rng = random.Random(1234)
    return [[rng.randrange(3, 1024) for _ in range(n)] for n in PROMPT_LENS]


def one_run(args) -> None:
    """Inside a fresh process: one LLM, all prompts, results as JSON."""
    t0 = time.time()
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    backend = args.backend
    if backend == "qimeng":
        from qimeng_serve.vllm_plugin.registration import cli_name

        backend = cli_name()  # "qimeng", or "CUSTOM" on vLLM 0.26
    t1 = time.time()
    llm = LLM(model=str(args.model), skip_tokenizer_init=True, attention_backend=backend, enforce_eager=args.eager,
              gpu_memory_utilization=0.35, max_model_len=MAX_MODEL_LEN, dtype="float16", seed=0,
              enable_prefix_caching=False, max_num_seqs=8, max_num_batched_tokens=4096)
    t2 = time.time()
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True, detokenize=False,
                            logprobs=2, prompt_logprobs=0)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts()], params)
    t3 = time.time()
    rows = []
    for o in outs:
        c = o.outputs[0]
        top2 = [sorted((lp.logprob for lp in step.values()), reverse=True)[:2] for step in c.logprobs]
        # position 0 has no logprob (None, or {} in vLLM's flat container)
        prompt_lp = [d[tok].logprob if d and tok in d else None for d, tok in zip(o.prompt_logprobs, o.prompt_token_ids)]
        rows.append({"prompt_len": len(o.prompt_token_ids), "tokens": list(c.token_ids), "top2": top2,
                     "prompt_logprobs": prompt_lp})
    args.result.write_text(json.dumps({"backend": backend, "eager": args.eager, "outputs": rows,
                                       "seconds": {"import": t1 - t0, "init": t2 - t1, "generate": t3 - t2}}))
    print(f"RUN {args.run} backend={backend} eager={args.eager}: import {t1 - t0:.0f}s init {t2 - t1:.0f}s "
          f"generate {t3 - t2:.1f}s", flush=True)


def orchestrate(result: dict, args) -> None:
    wanted = set(args.runs.split(","))
    runs = {}
    for name, backend, eager, env in (r for r in RUNS if r[0] in wanted):
        path = args.out.with_name(args.out.stem + f".{name}.json")
        log = args.out.with_name(args.out.stem + f".{name}.log")
        cmd = [sys.executable, __file__, "--model", str(args.model), "--run", name, "--backend", backend,
               "--result", str(path), "--max-tokens", str(args.max_tokens)] + (["--eager"] if eager else [])
        print(f"run {name}: {' '.join(cmd)}", flush=True)
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=os.environ | env, timeout=1200,
                                  check=False)
        text = log.read_text(errors="replace")
        entry = {"returncode": proc.returncode, "log": str(log), "used_qimeng": SERVING_MARK in text}
        if proc.returncode == 0 and path.is_file():
            entry |= json.loads(path.read_text())
        else:
            entry["log_tail"] = text[-4000:]
        runs[name] = entry
        print(f"run {name}: exit {proc.returncode}, qimeng in engine log: {entry['used_qimeng']}", flush=True)
    result["runs"] = {k: {kk: vv for kk, vv in v.items() if kk != "outputs"} for k, v in runs.items()}
    ref = runs.get("triton_eager")
    ok = ref is not None and ref["returncode"] == 0
    if not ok:
        result["error"] = "the TRITON_ATTN reference run failed"
    for name, run in runs.items():
        if name == "triton_eager":
            continue
        verdict = judge(run, ref) if ok else {"ok": False, "why": "no reference"}
        result.setdefault("comparisons", {})[name] = verdict
        ok &= verdict["ok"]
        print(f"{'ok  ' if verdict['ok'] else 'FAIL'} {name}: {json.dumps(verdict)[:600]}", flush=True)
    if not ok:
        result["status"] = "failed"


def judge(run: dict, ref: dict) -> dict:
    if run["returncode"] != 0:
        return {"ok": False, "why": "the run failed", "log_tail": run.get("log_tail", "")[-1500:]}
    if not run["used_qimeng"]:
        return {"ok": False, "why": f"the engine log never says '{SERVING_MARK}': another backend served"}
    per_prompt, ok = [], True
    for mine, theirs in zip(run["outputs"], ref["outputs"]):
        row = {"prompt_len": mine["prompt_len"], "tokens_equal": mine["tokens"] == theirs["tokens"]}
        if not row["tokens_equal"]:
            first = next(i for i, (a, b) in enumerate(zip(mine["tokens"], theirs["tokens"])) if a != b)
            gap = theirs["top2"][first][0] - theirs["top2"][first][1] if len(theirs["top2"][first]) == 2 else 0.0
            row |= {"first_difference": first, "reference_top2_gap": gap, "near_tie": gap < NEAR_TIE}
        diffs = [abs(a - b) for a, b in zip(mine["prompt_logprobs"], theirs["prompt_logprobs"])
                 if a is not None and b is not None]
        row["prompt_logprob_max_diff"] = max(diffs, default=0.0)
        row["prompt_logprob_mean_diff"] = sum(diffs) / max(len(diffs), 1)
        row["ok"] = ((row["tokens_equal"] or row["near_tie"]) and row["prompt_logprob_max_diff"] <= PROMPT_LOGPROB_MAX
                     and row["prompt_logprob_mean_diff"] <= PROMPT_LOGPROB_MEAN)
        ok &= row["ok"]
        per_prompt.append(row)
    return {"ok": ok, "prompts": per_prompt, "seconds": run.get("seconds")}


if __name__ == "__main__":
    main()
