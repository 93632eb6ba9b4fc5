"""A spawn target shaped like vLLM's own (EngineCoreProc.run_engine_core, the workers' entry): its module
imports vllm.v1.engine.core, so a child unpickling the target resolves vLLM's platform (which runs the
platform-plugin hooks) before it unpickles the arguments. It does not import qimeng_serve."""

import vllm.v1.engine.core  # noqa: F401  (the import a real vLLM spawn target makes)


def report(attention_config, queue) -> None:
    queue.put(attention_config.backend.name)
