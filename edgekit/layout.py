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
    def roofline(self) -> Path:
        return self.root / "outputs" / "roofline.json"

    @property
    def eval_dir(self) -> Path:
        return self.root / "data" / "eval"

    @property
    def eval_pairs(self) -> Path:
        return self.eval_dir / "sts_pairs.jsonl"

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
        return self.baseline_dir / "reference_embeddings.npy"

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
