"""Programs the plugin tests run in a fresh interpreter (`python -m tests.vllm.drivers NAME`), each
printing one JSON line: what vLLM resolved, in a process whose vLLM state no other test touched."""

from __future__ import annotations

import json
import sys


def engine_config(model_dir: str) -> dict:
    """`--attention-backend qimeng` through vLLM's CLI parser and EngineArgs.create_engine_config."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())  # loads the general plugins first
    args = parser.parse_args(["--model", model_dir, "--attention-backend", "qimeng", "--max-model-len", "4096",
                              "--dtype", "float16", "--skip-tokenizer-init"])
    config = EngineArgs.from_cli_args(args).create_engine_config()
    backend = config.attention_config.backend
    return {"member": backend.name, "class": f"{backend.get_class().__module__}.{backend.get_class().__name__}"}


def spawn() -> dict:
    """Spawned children unpickle an AttentionConfig holding the QIMENG member, as vLLM's workers do: one
    with every plugin, one allowed only the general plugin (VLLM_PLUGINS=qimeng, no platform hook)."""
    import multiprocessing
    import os

    from vllm.config import AttentionConfig
    from vllm.plugins import load_general_plugins

    from tests.vllm import spawn_child

    load_general_plugins()
    config = AttentionConfig(backend="qimeng")
    ctx = multiprocessing.get_context("spawn")
    children = {}
    for label, allowed in (("with_hook", None), ("general_only", "qimeng")):
        if allowed:
            os.environ["VLLM_PLUGINS"] = allowed  # the child reads it when it resolves its platform
        queue = ctx.SimpleQueue()
        child = ctx.Process(target=spawn_child.report, args=(config, queue))
        child.start()
        children[label] = (child, queue)
    result = {"parent": config.backend.name}
    for label, (child, queue) in children.items():
        child.join(300)
        result[label] = {"exitcode": child.exitcode, "member": queue.get() if child.exitcode == 0 else None}
    return result


def unregistered() -> dict:
    """Without the plugin (VLLM_PLUGINS excludes it) the name is unknown, and vLLM says so."""
    from vllm.config import AttentionConfig
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    try:
        AttentionConfig(backend="qimeng")
    except Exception as exc:
        return {"error": str(exc)}
    return {"error": None}


if __name__ == "__main__":
    name, *rest = sys.argv[1:]
    print("RESULT " + json.dumps(globals()[name](*rest)), flush=True)
