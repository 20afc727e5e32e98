"""Rewrite the int8 block-quantised ONNX files so onnxruntime can run them (fp32 weights).

onnxruntime rejects YuNet's one-element-scale DequantizeLinear that also carries a
`block_size`, and treats SFace's 29 initializer-backed graph inputs as required feeds. Folding
every constant DequantizeLinear into an fp32 initializer and pruning those inputs fixes both,
and gives exactly the values onnx's reference evaluator computes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

__all__ = [
    "decompose_prelu",
    "dequantize",
    "fold_constant_dequantize",
    "prune_inputs",
    "set_dynamic_dims",
]


def dequantize(
    x: NDArray[np.generic],
    scale: NDArray[np.floating],
    zero_point: NDArray[np.generic] | None,
    axis: int = 1,
    block_size: int = 0,
) -> NDArray[np.float32]:
    """ONNX DequantizeLinear semantics: per-tensor, per-axis or block-wise."""
    values = x.astype(np.float32)
    zp = np.zeros_like(scale, dtype=np.float32) if zero_point is None else zero_point
    zp = zp.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.size == 1:
        # One scale is per-tensor whatever `block_size` says (YuNet carries such a node).
        return ((values - zp.reshape(())) * scale.reshape(())).astype(np.float32)
    axis = axis % values.ndim
    if block_size > 0:
        scale = np.repeat(scale, block_size, axis=axis)
        zp = np.repeat(zp, block_size, axis=axis)
        cut = [slice(None)] * values.ndim
        cut[axis] = slice(0, values.shape[axis])
        scale, zp = scale[tuple(cut)], zp[tuple(cut)]
    else:
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((values - zp) * scale).astype(np.float32)


def fold_constant_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace each DequantizeLinear whose inputs are all initializers by an fp32 initializer."""
    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    kept_nodes = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type != "DequantizeLinear" or not all(n in constants for n in inputs):
            kept_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        arrays = [numpy_helper.to_array(constants[name]) for name in inputs]
        folded = dequantize(
            arrays[0],
            arrays[1],
            arrays[2] if len(arrays) > 2 else None,
            axis=int(attrs.get("axis", 1)),
            block_size=int(attrs.get("block_size", 0)),
        )
        tensor = numpy_helper.from_array(folded, name=node.output[0])
        graph.initializer.append(tensor)
        constants[tensor.name] = tensor
    del graph.node[:]
    graph.node.extend(kept_nodes)
    _drop_unused_initializers(model)
    return model


def decompose_prelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite PRelu(x, s) as Relu(x) + s·(x − Relu(x)): the same values, bit for bit.

    onnxruntime's PRelu with per-channel (C,1,1) slopes takes a slow broadcasting path: it was
    15 of SFace's 28 ms on one core; the four plain element-wise ops take 17 ms in all.
    """
    rewritten = []
    for node in model.graph.node:
        if node.op_type != "PRelu":
            rewritten.append(node)
            continue
        x, slope = node.input
        out = node.output[0]
        pos, neg, scaled = f"{out}/pos", f"{out}/neg", f"{out}/scaled"
        rewritten += [
            helper.make_node("Relu", [x], [pos]),
            helper.make_node("Sub", [x, pos], [neg]),
            helper.make_node("Mul", [neg, slope], [scaled]),
            helper.make_node("Add", [pos, scaled], [out]),
        ]
    del model.graph.node[:]
    model.graph.node.extend(rewritten)
    return model


def prune_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop graph inputs that are initializers or that no node reads."""
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    consumed = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.input if i.name not in constants and i.name in consumed]
    del graph.input[:]
    graph.input.extend(kept)
    return model


def set_dynamic_dims(model: onnx.ModelProto, dims: Mapping[str, Mapping[int, str]]) -> None:
    """Name some dimensions of graph inputs/outputs symbolically, e.g. {"data": {0: "N"}}."""
    for value in [*model.graph.input, *model.graph.output]:
        for index, symbol in dims.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[index]
            dim.ClearField("dim_value")
            dim.dim_param = symbol


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    consumed |= {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in consumed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
