"""The ``decoder_model`` stage: the language model every decoder variant starts from, and its text.

``decoder.source: edgekit-tiny-llama`` trains one here (``edgekit.tasks.generation.maker``) on the train
part of the corpus; a local folder or a Hugging Face id in the local cache is copied instead, and its
own tokenizer is kept. Either way the corpus is split with the seed into data/decoder/{train,heldout}.txt.

Example:
    >>> run(params, Layout(Path(".")))["heldout_perplexity"]
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgekit.fsutil import staged_dir, write_json, write_text
from edgekit.layout import Layout
from edgekit.params import Params
from edgekit.tasks.generation.corpus import split_corpus

_MODEL_FILES = ("*.json", "*.safetensors", "*.model")


def run(params: Params, layout: Layout) -> dict[str, Any]:
    decoder = params.decoder
    train, heldout = split_corpus(layout.root / decoder.corpus_dir, decoder.heldout_share, params.seed)
    with staged_dir(layout.decoder_data) as out:
        write_text(out / "train.txt", "\n".join(train) + "\n")
        write_text(out / "heldout.txt", "\n".join(heldout) + "\n")
    with staged_dir(layout.decoder_model) as out:
        if decoder.made_here:
            from edgekit.tasks.generation.maker import make_decoder

            record = {"source": decoder.source, **make_decoder(decoder.make, train, heldout, out, params.seed, params.threads)}
        else:
            record = {"source": decoder.source, **_copy_source(decoder.source, out)}
    record.update(train_sentences=len(train), heldout_sentences=len(heldout))
    write_json(layout.decoder_model_metrics, record)
    return record


def _copy_source(spec: str, out: Path) -> dict[str, Any]:
    from edgekit.modelsource import resolve_source

    source = resolve_source(spec)
    for pattern in _MODEL_FILES:
        for path in source.folder.glob(pattern):
            shutil.copy2(path, out / path.name)
    return {"kind": source.kind, "version": source.version}
