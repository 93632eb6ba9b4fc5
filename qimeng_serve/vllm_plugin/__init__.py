"""The vLLM attention-backend plugin: `vllm serve MODEL --attention-backend qimeng`.

- `registration`: the entry points vLLM calls (`vllm.general_plugins`, `vllm.platform_plugins`);
  the name is QIMENG where vLLM can add names (0.27+), else the CUSTOM slot (0.26).
- `artifacts`: which kernel bundle serves this GPU, dtype and head size, resolved once per process.
- `backend`: what the backend tells vLLM it supports.
- `metadata`: the builder that turns vLLM's batch metadata into our launch metadata.
- `impl`: the forward pass (paged decode + paged prefill) and the KV-cache write.

Importing this package does not import vLLM; each module imports it when it is used.
"""

BACKEND_CLASS_PATH = "qimeng_serve.vllm_plugin.backend.QimengAttentionBackend"
BACKEND_NAME = "QIMENG"
