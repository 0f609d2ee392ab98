"""The project's Python tools: model bundles for the clip_perception engine, and the
reference data they are checked against.

    clip_tools.bundle         the bundle contract: manifest, tokenizer.json, export wrappers
    clip_tools.export         export a CLIP checkpoint to a bundle     (models/export.py)
    clip_tools.families       format-2 families (MobileCLIP, SigLIP): sections, SigLIP
                              tokenizers, the tiny fixture architectures
    clip_tools.quantize       add the int8 image encoder to a bundle   (models/quantize.py)
    clip_tools.benchmark      tract vs onnxruntime encoder timings     (models/benchmark.py)
    clip_tools.tabletop       the default model: scenes, training, evaluation set, evaluation
                              (models/tabletop/*.py)
    clip_tools.rust_tables    generators of the Rust tables in src/text/ (python3 -m ...)
    clip_tools.log            the one logging helper
    clip_tools.paths          where the tools find the repository's files

Install with `pip install -r models/requirements.txt` from the repository root (an editable
install of this folder, `pip install -e models`, plus the dependencies). The scripts named
above are thin entry points kept for the commands in the README; pyproject.toml declares
the same entry points as console scripts (clip-export, clip-quantize, ...).
"""
