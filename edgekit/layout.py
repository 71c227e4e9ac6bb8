"""Where each stage reads and writes, relative to the project folder (the DVC root).

Example:
    >>> Layout(Path(".")).variant_dir("ort-int8")
    PosixPath('models/variants/ort-int8')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def environment(self) -> Path:
        return self.root / "outputs" / "environment.json"

    @property
    def model_source(self) -> Path:
        """The source model's digest, file by file: the baseline stage's dep on the model itself."""
        return self.root / "outputs" / "model_source.json"

    @property
    def decoder_source(self) -> Path:
        """The decoder's source digest, like ``model_source``: the decoder_model stage's dep on a decoder it does not make."""
        return self.root / "outputs" / "decoder_source.json"

    @property
    def roofline(self) -> Path:
        return self.root / "outputs" / "roofline.json"

    @property
    def eval_dir(self) -> Path:
        """The test part of the labelled pairs: every reported metric and gate reads it, no optimizer does."""
        return self.root / "data" / "eval"

    @property
    def eval_pairs(self) -> Path:
        return self.eval_dir / "sts_pairs.jsonl"

    @property
    def validation_dir(self) -> Path:
        """The validation part (no sentence in common with the test part): for optimizers and tuning only."""
        return self.root / "data" / "validation"

    @property
    def validation_pairs(self) -> Path:
        return self.validation_dir / "sts_pairs.jsonl"

    @property
    def calibration_dir(self) -> Path:
        return self.root / "data" / "calibration"

    @property
    def calibration(self) -> Path:
        return self.calibration_dir / "sentences.txt"

    @property
    def source_model(self) -> Path:
        return self.root / "models" / "source"

    @property
    def baseline_dir(self) -> Path:
        return self.root / "outputs" / "baseline"

    @property
    def reference_embeddings(self) -> Path:
        """The baseline's vectors of the test sentences, rows in the order of ``reference_sentences``."""
        return self.baseline_dir / "reference_embeddings.npy"

    @property
    def reference_sentences(self) -> Path:
        return self.baseline_dir / "sentences.json"

    @property
    def fairness_reference_embeddings(self) -> Path:
        """The baseline's vectors of the fairness check's sentences (its per-pair results, for paired CIs)."""
        return self.baseline_dir / "fairness_embeddings.npy"

    @property
    def fairness_reference_sentences(self) -> Path:
        return self.baseline_dir / "fairness_sentences.json"

    @property
    def baseline_metrics(self) -> Path:
        return self.root / "metrics" / "baseline.json"

    def variant_dir(self, name: str) -> Path:
        return self.root / "models" / "variants" / name

    def benchmark_samples(self, name: str) -> Path:
        return self.root / "outputs" / "benchmark" / f"{name}.json"

    def benchmark_metrics(self, name: str) -> Path:
        return self.root / "metrics" / "benchmark" / f"{name}.json"

    def evaluate_metrics(self, name: str) -> Path:
        return self.root / "metrics" / "evaluate" / f"{name}.json"

    @property
    def summary(self) -> Path:
        return self.root / "metrics" / "summary.json"

    @property
    def gates(self) -> Path:
        """Every gate of every stage for every variant, with its evidence (the ``select`` stage)."""
        return self.root / "outputs" / "gates.json"

    @property
    def decision(self) -> Path:
        """The short decision record ``dvc exp show`` displays."""
        return self.root / "metrics" / "decision.json"

    @property
    def fairness_dir(self) -> Path:
        return self.root / "data" / "fairness"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    # --- the decoder (``decoder:`` in params.yaml), beside the encoder ---
    @property
    def decoder_model(self) -> Path:
        """The source language model (a Hugging Face folder), made or copied by ``decoder_model``."""
        return self.root / "models" / "decoder"

    @property
    def decoder_data(self) -> Path:
        """train.txt and heldout.txt: the corpus split the decoder is trained and judged on."""
        return self.root / "data" / "decoder"

    @property
    def decoder_model_metrics(self) -> Path:
        return self.root / "metrics" / "decoder_model.json"

    @property
    def decoder_baseline_dir(self) -> Path:
        """The baseline's logits on the held-out windows and its greedy continuations."""
        return self.root / "outputs" / "decoder_baseline"

    def decoder_variant_dir(self, name: str) -> Path:
        return self.root / "models" / "decoder_variants" / name

    def decoder_benchmark_samples(self, name: str) -> Path:
        return self.root / "outputs" / "decoder_benchmark" / f"{name}.json"

    def decoder_benchmark_metrics(self, name: str) -> Path:
        return self.root / "metrics" / "decoder_benchmark" / f"{name}.json"

    def decoder_evaluate_metrics(self, name: str) -> Path:
        return self.root / "metrics" / "decoder_evaluate" / f"{name}.json"

    @property
    def decoder_summary(self) -> Path:
        return self.root / "metrics" / "decoder_summary.json"
