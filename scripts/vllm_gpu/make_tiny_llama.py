"""Write a tiny random-weight Llama (config.json + model.safetensors) for end-to-end runs in vLLM.

Like the GPU payload's make_tiny_llama.py, but with the plugin's shapes: head_dim 128, fp16, GQA 4,
32k positions (so max_model_len can exceed 17k), and weights scaled so attention is sharp (q/k large
enough that softmax is far from uniform) and the logits well separated: greedy tokens then depend on
what attention computes, and two correct backends agree on them.

    python3 scripts/vllm_gpu/make_tiny_llama.py OUT_DIR [--head-dim 128] [--dtype float16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for qimeng_serve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    ap.add_argument("--max-positions", type=int, default=32768)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    from qimeng_serve.vllm_plugin.harness import write_model_config

    write_model_config(args.out, heads=args.heads, kv_heads=args.kv_heads, head_dim=args.head_dim, layers=args.layers,
                       hidden=args.hidden, max_positions=args.max_positions, dtype=args.dtype)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(args.seed)
    hidden, d, inter, vocab = args.hidden, args.head_dim, 512, 1024

    def rand(*shape, std):
        return (torch.randn(*shape, generator=gen) * std).to(dtype)

    tensors = {"model.embed_tokens.weight": rand(vocab, hidden, std=1.0),
               "lm_head.weight": rand(vocab, hidden, std=0.15),
               "model.norm.weight": torch.ones(hidden, dtype=dtype)}
    for i in range(args.layers):
        p = f"model.layers.{i}."
        tensors |= {
            # q, k ~ N(0, 0.1^2 * hidden) per element: scores spread over several units -> peaked softmax
            p + "self_attn.q_proj.weight": rand(args.heads * d, hidden, std=0.1),
            p + "self_attn.k_proj.weight": rand(args.kv_heads * d, hidden, std=0.1),
            p + "self_attn.v_proj.weight": rand(args.kv_heads * d, hidden, std=0.06),
            p + "self_attn.o_proj.weight": rand(hidden, args.heads * d, std=0.06),
            p + "mlp.gate_proj.weight": rand(inter, hidden, std=0.02),
            p + "mlp.up_proj.weight": rand(inter, hidden, std=0.02),
            p + "mlp.down_proj.weight": rand(hidden, inter, std=0.02),
            p + "input_layernorm.weight": torch.ones(hidden, dtype=dtype),
            p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=dtype),
        }
    save_file(tensors, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {args.out}: {sum(t.numel() for t in tensors.values())} parameters, head_dim {d}, {args.dtype}")


if __name__ == "__main__":
    main()
