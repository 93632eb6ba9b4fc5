"""The kernel registry: one layout for a local folder and a Hugging Face Hub repo.

    index.json                                   schema qimeng-registry/1: every bundle, its targets,
                                                 size, sha256, validation and speed summary
    README.md                                    the registry card, generated from the index
    sm_XX/<dtype>/qimeng-<set>-sm_XX-<dtype>.safetensors   the bundles

Modules: `layout` (paths), `index` (index.json), `card` (README.md), `select` (which bundle a GPU
runs), `verify` (sha256 against the index), `lock` (qimeng.lock), `trust` (allow-list), `hub`
(reads through the HF cache), `publish`, `pull`, `resolve` (the one call serving code makes).
"""
