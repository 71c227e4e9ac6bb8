"""OpenVINO decoder: a causal language model as a stateful IR, its KV cache kept inside the CPU plugin.

``optimize`` traces the fp32 PyTorch model one step at a time (input ids plus the past keys and values of
every layer in, logits plus the present keys and values out) with ``ov.convert_model``, then makes the IR
*stateful*: each past/present pair becomes an OpenVINO variable, so the cache never leaves the plugin and a
call takes only ``input_ids``, ``attention_mask``, ``position_ids`` and ``beam_idx`` (the inputs
openvino.genai's LLM pipeline also feeds; the CPU plugin fuses the cache into its attention node). int8 and
int4 compress the weights with nncf; activations and the cache stay f32. torch, transformers and nncf are
imported only by ``optimize``: loading and running a variant needs openvino alone.

Every call computes the logits of every new position (``score`` needs them; prefill reads the last row).

Example:
    >>> decoder = OpenVinoDecoder("int4", OpenVinoOptions(), threads=2)
    >>> decoder.optimize(Path("models/decoder"), out, scratch)["weights"]
    {'i4': {'layers': 28, 'parameters': 3407872}, 'u8': {'layers': 2, 'parameters': 524288}}
    >>> decoder.load(out, context=512)
    >>> decoder.prefill([1, 87, 5]).shape
    (1024,)
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from edgekit.errors import EdgekitError, UnsupportedModelError, VariantError
from edgekit.runtimes.openvino.config import OpenVinoOptions
from edgekit.runtimes.openvino.ir import MODEL_FILE, OV_TYPES, copy_source_files, ir_stats
from edgekit.tasks.generation.backend import DecoderBackend

# nncf's weight compression per precision. INT4 groups of 64 divide every hidden and MLP width in use
# (256, 768, 2048, 5632, ...); nncf keeps the embedding and the LM head at INT8_ASYM unless all_layers is set.
WEIGHT_COMPRESSION: dict[str, dict[str, Any]] = {
    "int8": {"mode": "INT8_ASYM"},
    "int4": {"mode": "INT4_SYM", "group_size": 64, "ratio": 1.0, "all_layers": False},
}
# The CPU plugin quantizes a fused KV cache to u8 by default: on the default decoder that moved decode logits
# by up to 1e-2 and the cached path's KL to the baseline from 4e-13 to 1.6e-6. It also quantizes activations
# to int8 in groups of 32 in front of compressed weights on CPUs with VNNI or AMX (not on AVX2-only ones, where
# the floors were measured). No precision name here asks for either, so both are off: a variant differs from
# fp32 by its weights only, on every CPU.
KV_CACHE_PRECISION = "f32"
DYNAMIC_QUANTIZATION_GROUP_SIZE = 0
# Largest |logit| difference from PyTorch the converted fp32 IR may show before the trace is judged wrong
# (the default decoder: 6e-6).
_TRACE_TOLERANCE = 1e-3


class OpenVinoDecoder(DecoderBackend):
    """A stateful OpenVINO IR of a causal LM on the CPU plugin, one sequence at a time (batch 1)."""

    def optimize(self, source: Path, out: Path, scratch: Path) -> dict[str, Any]:
        model, record = convert_decoder(source, self.threads)
        if self.precision in WEIGHT_COMPRESSION:
            model = _compress_weights(model, WEIGHT_COMPRESSION[self.precision], record)
        # ov.save_model compresses float weights to fp16 unless told not to.
        ov.save_model(model, out / MODEL_FILE, compress_to_fp16=False)
        record["steps"].append("ov.save_model, compress_to_fp16=False")
        copy_source_files(source, out)
        saved = ov.Core().read_model(out / MODEL_FILE)
        record["weights"] = weight_precisions(saved)
        record["ir"] = ir_stats(saved)
        return record

    def load(self, folder: Path, context: int) -> None:
        self._compile(ov.Core().read_model(folder / MODEL_FILE), context)

    def _compile(self, model: ov.Model, context: int) -> None:
        self.weights = weight_precisions(model)
        self.compiled = ov.Core().compile_model(model, "CPU", self._compile_config())
        self.request = self.compiled.create_infer_request()
        self.context = context
        self.reset()

    def _compile_config(self) -> dict[str, Any]:
        # Without the f32 hint the plugin runs bf16 on CPUs that have it (see RUNTIME_PRECISION in config.py).
        precision = self.options.inference_precision if self.options.inference_precision != "none" else "f32"
        return {
            props.inference_num_threads: self.threads,
            hints.inference_precision: OV_TYPES[precision],
            hints.performance_mode: getattr(hints.PerformanceMode, self.options.performance_hint),
            props.streams.num: self.options.num_streams,
            "KV_CACHE_PRECISION": KV_CACHE_PRECISION,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_QUANTIZATION_GROUP_SIZE,
        }

    def reset(self) -> None:
        self.request.reset_state()
        self.position = 0

    def _infer(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids`` to the cache; the logits of every one of them, ``(len(ids), vocab)``."""
        n = len(ids)
        if self.position + n > self.context:
            raise EdgekitError(f"{self.position + n} tokens exceed the context of {self.context}",
                               "shorten decoder.benchmark.prompt_lengths or generate_tokens")
        self.request.infer({
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, self.position + n), dtype=np.int64),
            "position_ids": np.arange(self.position, self.position + n, dtype=np.int64)[None],
            "beam_idx": np.zeros(1, dtype=np.int32),
        })
        self.position += n
        # A copy: the next infer() overwrites the request's output buffer.
        return np.array(self.request.get_tensor("logits").data[0], dtype=np.float32)

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        return self._infer(ids)[-1]

    def decode(self, token: int) -> np.ndarray:
        return self._infer([token])[-1]

    def score(self, ids: Sequence[int]) -> np.ndarray:
        self.reset()
        logits = self._infer(ids)
        self.reset()
        return logits

    def describe(self) -> dict[str, Any]:
        compiled = self.compiled
        return {
            "threads": int(compiled.get_property(props.inference_num_threads)),
            "streams": int(compiled.get_property(props.streams.num)),
            "performance_hint": str(compiled.get_property(hints.performance_mode)),
            "inference_precision": compiled.get_property(hints.inference_precision).get_type_name(),
            "kv_cache": "stateful IR, CPU plugin variables",
            "kv_cache_precision": compiled.get_property("KV_CACHE_PRECISION").get_type_name(),
            "dynamic_quantization_group_size": int(compiled.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")),
            "weight_compression": WEIGHT_COMPRESSION.get(self.precision, "none (fp32 weights)"),
            "weights": self.weights,
            "device": ov.Core().get_property("CPU", props.device.full_name),
            "openvino": ov.get_version(),
        }


def convert_decoder(source: Path, threads: int) -> tuple[ov.Model, dict[str, Any]]:
    """The fp32 causal LM of ``source`` as a stateful OpenVINO model, checked against PyTorch on ``threads``.

    Raises:
        UnsupportedModelError: the model is no causal LM, or has sliding-window layers.
        VariantError: the converted model's logits differ from PyTorch's.
    """
    import torch

    model = _load_causal_lm(source)
    step = _kv_cache_step(model)
    with torch.no_grad(), warnings.catch_warnings():
        # The one TracerWarning is SDPA's is_causal test, settled (False) by the 4D mask we pass;
        # any trace that does not generalize is caught by _check_against_torch below.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        ov_model = ov.convert_model(step, example_input=step.example_input(past=3, new=5), input=step.input_specs())
    _name_ports(ov_model, step.past_names)
    _add_beam_idx(ov_model)
    _make_stateful(ov_model)
    record = {
        "steps": ["ov.convert_model of one decoder step over explicit past keys/values (SDPA attention)",
                  "beam_idx Gather in front of every past tensor (the CPU plugin's fused KV-cache pattern)",
                  "apply_make_stateful_transformation: past/present pairs become variables"],
        "conversion": {"frontend": "pytorch", "layers": step.layers, "kv_heads": step.kv_heads, "head_dim": step.head_dim,
                       "stateful": True, "inputs": [port.get_any_name() for port in ov_model.inputs],
                       "torch": torch.__version__, "openvino": ov.get_version()},
    }
    record["conversion"]["max_abs_logit_difference"] = _check_against_torch(ov_model, model, threads)
    return ov_model, record


def _load_causal_lm(source: Path):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(source, attn_implementation="sdpa", dtype=torch.float32).eval()
    except (ValueError, KeyError) as exc:  # transformers' words for a model_type with no causal LM class
        raise UnsupportedModelError(f"{source} holds no causal language model transformers can load ({exc})",
                                    "decoder.source must be a decoder-only model (LLaMA, Qwen, Phi, ...)") from exc
    config = model.config.get_text_config(decoder=True)
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        raise UnsupportedModelError(f"the openvino decoder backend handles full-attention layers only, not {set(config.layer_types)}",
                                    "use the pytorch or llamacpp runtime for this model")
    return model


def _kv_cache_step(model):
    """``model`` as one decoder step over flat past tensors, the module ``ov.convert_model`` traces."""
    import torch

    class KVCacheStep(torch.nn.Module):
        """``(input_ids, attention_mask, position_ids, k0, v0, k1, v1, ...)`` to ``(logits, k0, v0, ...)``, present
        tensors holding the past ones and the new tokens'."""

        def __init__(self):
            super().__init__()
            self.model = model
            config = model.config.get_text_config(decoder=True)
            self.layers = config.num_hidden_layers
            self.kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
            self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            self.past_names = [f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]

        def forward(self, input_ids, attention_mask, position_ids, *past):
            output = self.model(input_ids=input_ids, attention_mask=additive_mask(attention_mask, position_ids),
                                position_ids=position_ids, cache_position=position_ids[0],
                                past_key_values=_filled_cache(past), use_cache=True)
            return (output.logits, *(t for layer in output.past_key_values.layers for t in (layer.keys, layer.values)))

        def example_input(self, past: int, new: int) -> tuple:
            kv = torch.zeros(1, self.kv_heads, past, self.head_dim)
            return (torch.arange(new)[None] + 3, torch.ones(1, past + new, dtype=torch.long),
                    torch.arange(past, past + new)[None], *(kv for _ in self.past_names))

        def input_specs(self) -> list[tuple[ov.PartialShape, ov.Type]]:
            # Batch 1 (edgekit decodes one sequence); new tokens and past length dynamic.
            ids = (ov.PartialShape([1, -1]), ov.Type.i64)
            kv = (ov.PartialShape([1, self.kv_heads, -1, self.head_dim]), ov.Type.f32)
            return [ids, ids, ids, *(kv for _ in self.past_names)]

    return KVCacheStep().eval()


def _filled_cache(past: Sequence):
    """A transformers ``DynamicCache`` holding the flat ``(k0, v0, k1, v1, ...)`` past tensors."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache()
    for keys, values in zip(past[0::2], past[1::2], strict=True):
        # DynamicLayer.update concatenates onto a 1-D empty tensor, a rank mismatch OpenVINO's Concat rejects
        # ("Axis -2 out of the tensor rank range"); so each layer starts from the past tensors themselves.
        layer = DynamicLayer()
        layer.dtype, layer.device = keys.dtype, keys.device
        layer.keys, layer.values, layer.is_initialized = keys, values, True
        cache.layers.append(layer)
    return cache


def additive_mask(attention_mask, position_ids):
    """The ``(1, 1, new, past + new)`` float mask: 0 where a new token may attend, the dtype's minimum elsewhere.

    transformers builds its own from the 2D mask with ``torch.vmap``, which TorchScript tracing cannot record
    (``unordered_map::at``); a 4D mask is used as given. Built from tensors only, so both lengths stay dynamic.
    """
    import torch

    key_positions = attention_mask.cumsum(-1) - 1
    allowed = attention_mask.bool()[:, None, :] & (key_positions[:, None, :] <= position_ids[:, :, None])
    blocked = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return blocked[:, None]


def _name_ports(ov_model: ov.Model, past_names: list[str]) -> None:
    # Tracing leaves numeric debug names beside the real ones; give each port exactly one.
    inputs = ["input_ids", "attention_mask", "position_ids", *past_names]
    outputs = ["logits", *(name.replace("past_key_values", "present") for name in past_names)]
    for ports, names in ((ov_model.inputs, inputs), (ov_model.outputs, outputs)):
        for port, name in zip(ports, names, strict=True):
            port.get_tensor().set_names({name})


def _add_beam_idx(ov_model: ov.Model) -> None:
    """Put ``Gather(past, beam_idx, 0)`` in front of every past tensor, as optimum-intel's exports have.

    The CPU plugin fuses ReadValue -> Gather(beam_idx) -> Concat -> SDPA into one attention node that appends
    to its cache in place (StatefulSDPAFusion); without the Gather it runs Concat and a decomposed attention,
    copying the whole cache on every token.
    """
    import openvino.opset13 as ops

    beam_idx = ops.parameter(ov.PartialShape([-1]), ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    for port in ov_model.inputs:
        if port.get_any_name().startswith("past_key_values"):
            consumers = list(port.get_node().output(0).get_target_inputs())
            reordered = ops.gather(port.get_node(), beam_idx, ops.constant(0))
            for consumer in consumers:
                consumer.replace_source_output(reordered.output(0))
    ov_model.add_parameters([beam_idx])
    ov_model.validate_nodes_and_infer_types()


def _make_stateful(ov_model: ov.Model) -> None:
    """Turn every past/present pair into a variable that starts empty (``reset_state``)."""
    import openvino.opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    pairs = {port.get_any_name(): port.get_any_name().replace("past_key_values", "present")
             for port in ov_model.inputs if port.get_any_name().startswith("past_key_values")}
    apply_make_stateful_transformation(ov_model, pairs)
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            # An explicit (1, heads, 0, head_dim) initial value: the plugin's fused cache node needs one
            # ("ReadValue contains less parent edges than 0" at compile time without it).
            dims = np.array([dim.get_min_length() for dim in op.get_output_partial_shape(0)], dtype=np.int64)
            op.set_arguments([ops.broadcast(ops.constant(np.float32(0)), ops.constant(dims))])
    ov_model.validate_nodes_and_infer_types()


def _check_against_torch(ov_model: ov.Model, model, threads: int) -> float:
    """Largest |logit| difference from PyTorch over a 6-token prefill and 2 decode steps through the cache.

    Raises:
        VariantError: above ``_TRACE_TOLERANCE``: the trace does not generalize to other lengths.
    """
    import torch

    ids = np.arange(8, dtype=np.int64) * 7 % model.config.get_text_config(decoder=True).vocab_size
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)[None]).logits[0].numpy()
    checker = OpenVinoDecoder("fp32", OpenVinoOptions(), threads)
    checker._compile(ov_model, context=len(ids))
    got = np.vstack([checker._infer(ids[:6].tolist()), checker._infer([int(ids[6])]), checker._infer([int(ids[7])])])
    difference = float(np.abs(got - expected).max())
    if not difference <= _TRACE_TOLERANCE:
        raise VariantError(f"the converted decoder's logits differ from PyTorch's by up to {difference:.2e} "
                           f"(tolerance {_TRACE_TOLERANCE:.0e}): the traced graph does not generalize",
                           "use the pytorch or llamacpp runtime for this model, and report the model to edgekit")
    return difference


def _compress_weights(model: ov.Model, settings: dict[str, Any], record: dict[str, Any]) -> ov.Model:
    """nncf's data-free weight compression with ``settings`` (``WEIGHT_COMPRESSION``); activations stay float."""
    import nncf

    arguments = {**settings, "mode": getattr(nncf.CompressWeightsMode, settings["mode"])}
    try:
        model = nncf.compress_weights(model, **arguments)
    except nncf.InvalidGroupSizeError as exc:
        raise UnsupportedModelError(f"nncf cannot split this model's weights into groups of {settings.get('group_size')} ({exc})",
                                    "use the int8 precision for this model") from exc
    grouping = f"groups of {settings['group_size']}, ratio {settings['ratio']}" if "group_size" in settings else "per output channel"
    record["steps"].append(f"nncf.compress_weights {settings['mode']}, {grouping} (data-free, weights only)")
    record["nncf"] = {"algorithm": "compress_weights", **settings, "version": nncf.__version__}
    return model


# Ops between a weight constant and the MatMul/Gather that uses it: nncf's decompression (Convert, Subtract
# of the zero point, Multiply by the scale, Reshape of int4 groups back to rows).
_DECOMPRESSION_OPS = ("Convert", "Subtract", "Multiply", "Reshape")


def weight_precisions(model: ov.Model) -> dict[str, dict[str, int]]:
    """Per stored element type (``f32``, ``u8``, ``i4``, ...), how many weight matrices (MatMul and embedding
    Gather inputs that are constants) and weights the model holds."""
    found: dict[str, Counter] = {}
    for op in model.get_ops():
        port = {"MatMul": 1, "Gather": 0}.get(op.get_type_name())
        if port is None:
            continue
        node = op.input(port).get_source_output().get_node()
        while node.get_type_name() in _DECOMPRESSION_OPS:
            node = node.input(0).get_source_output().get_node()
        if node.get_type_name() == "Constant" and len(node.get_output_shape(0)) >= 2:
            stats = found.setdefault(node.get_output_element_type(0).get_type_name(), Counter())
            stats["layers"] += 1
            stats["parameters"] += int(np.prod(node.get_output_shape(0)))
    return {kind: dict(stats) for kind, stats in sorted(found.items())}
