"""ONNX's own backend node tests (``onnx.backend.test.case.node``, generated offline by the
installed onnx package) for every operator fastconv imports, run through
``fastconv.onnx.backend.FastconvBackend``. Every test of a supported operator runs; those
outside the supported semantics are listed in EXPECTED_FAILURES with the reason, and must fail
with fastconv's clear UnsupportedOnnxError (never a wrong answer). fastconv models take batches:
the adapter runs a batchless graph of value-by-value operators as a batch of one."""

from __future__ import annotations

import warnings

import numpy as np
import onnx  # noqa: E402, F401
import pytest

from fastconv.onnx import SUPPORTED_OPS, UnsupportedOnnxError  # noqa: E402
from fastconv.onnx.backend import FastconvBackend, _weight_inputs  # noqa: E402

NO_BATCH = "a 1D input has no batch axis (fastconv models take batches)"
NOT_FLOAT = "integer tensors (fastconv models compute in float)"
BATCH_AXIS = "the operation mixes the batch axis with the others (fastconv keeps it apart)"
NOT_2D = "3D windows (fastconv pools and convolves 1D and 2D data)"
DILATED_POOL = "dilated pooling"
TRAINING = "training-mode semantics at inference (batch statistics, random dropout)"
SECOND_OUTPUT = "a second output (dropout mask, max-pool indices)"

EXPECTED_FAILURES = {
    "test_add_int8": NOT_FLOAT, "test_add_int16": NOT_FLOAT, "test_add_uint8": NOT_FLOAT,
    "test_add_uint16": NOT_FLOAT, "test_add_uint32": NOT_FLOAT, "test_add_uint64": NOT_FLOAT,
    "test_add_bcast": "a constant-free broadcast of a batchless input",
    "test_sub_bcast": "a constant-free broadcast of a batchless input",
    "test_mul_bcast": "a constant-free broadcast of a batchless input",
    "test_div_bcast": "a constant-free broadcast of a batchless input",
    "test_elu": "alpha other than 1", "test_elu_example": "alpha other than 1",
    "test_selu": "constants other than SELU's", "test_selu_example": "constants other than SELU's",
    "test_averagepool_3d_default": NOT_2D,
    "test_averagepool_2d_dilations": DILATED_POOL,
    "test_averagepool_3d_dilations_small": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": NOT_2D,
    "test_batchnorm_example_training_mode": TRAINING,
    "test_batchnorm_epsilon_training_mode": TRAINING,
    "test_clip_default_int8_min": NOT_FLOAT,
    "test_clip_default_int8_max": NOT_FLOAT, "test_clip_default_int8_inbounds": NOT_FLOAT,
    "test_clip_default_int8_inbounds_expanded": NOT_FLOAT,
    "test_identity_sequence": "sequence-typed values", "test_identity_opt": "optional values",
    "test_concat_1d_axis_0": NO_BATCH, "test_concat_1d_axis_negative_1": NO_BATCH,
    "test_concat_2d_axis_0": BATCH_AXIS, "test_concat_2d_axis_negative_2": BATCH_AXIS,
    "test_concat_3d_axis_0": BATCH_AXIS, "test_concat_3d_axis_negative_3": BATCH_AXIS,
    "test_constant": "the model's output is a constant, computed from no input",
    "test_constantofshape_float_ones": "the output's shape is the input's value (no batch)",
    "test_constantofshape_int_zeros": "the output's shape is the input's value (no batch)",
    "test_constantofshape_int_shape_zero": "the output's shape is the input's value (no batch)",
    "test_dropout_default_mask": SECOND_OUTPUT, "test_dropout_default_mask_ratio": SECOND_OUTPUT,
    "test_training_dropout_default": TRAINING, "test_training_dropout_default_mask": TRAINING,
    "test_training_dropout": TRAINING, "test_training_dropout_mask": TRAINING,
    "test_training_dropout_zero_ratio": TRAINING,
    "test_training_dropout_zero_ratio_mask": TRAINING,
    "test_flatten_axis0": BATCH_AXIS, "test_flatten_axis2": BATCH_AXIS,
    "test_flatten_axis3": BATCH_AXIS, "test_flatten_negative_axis4": BATCH_AXIS,
    "test_flatten_negative_axis2": BATCH_AXIS, "test_flatten_negative_axis1": BATCH_AXIS,
    "test_gemm_default_matrix_bias": "a bias that differs per sample of the batch",
    "test_gemm_transposeA": BATCH_AXIS, "test_gemm_all_attributes": BATCH_AXIS,
    "test_matmul_3d": "a weight per sample (batched B)", "test_matmul_4d": "a weight per sample",
    "test_matmul_bcast": "a weight per sample", "test_matmul_1d_3d": NO_BATCH,
    "test_matmul_4d_1d": "a 1D B (a vector product drops the feature axis)",
    "test_matmul_1d_1d": NO_BATCH,
    "test_maxpool_2d_uint8": NOT_FLOAT,
    "test_maxpool_with_argmax_2d_precomputed_pads": SECOND_OUTPUT,
    "test_maxpool_with_argmax_2d_precomputed_strides": SECOND_OUTPUT,
    "test_maxpool_3d_default": NOT_2D,
    "test_maxpool_2d_dilations": DILATED_POOL, "test_maxpool_3d_dilations": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl_large": NOT_2D,
    "test_edge_pad": NOT_FLOAT, "test_reflect_pad": NOT_FLOAT, "test_wrap_pad": NOT_FLOAT,
    "test_reduce_mean_default_axes_keepdims_example": BATCH_AXIS,
    "test_reduce_mean_default_axes_keepdims_random": BATCH_AXIS,
    **{f"test_reshape_{k}": BATCH_AXIS
       for k in ("reordered_all_dims", "one_dim", "negative_extended_dims",
                 "allowzero_reordered")},
    "test_softmax_axis_0": BATCH_AXIS,
    **{f"test_layer_normalization_{k}": BATCH_AXIS
       for k in ("4d_axis0", "4d_axis_negative_4", "2d_axis0", "2d_axis_negative_2",
                 "3d_axis0_epsilon", "3d_axis_negative_3_epsilon")},
    **{f"test_layer_normalization_{k}": "the mean and inverse deviation outputs"
       for k in ("4d_axis1", "4d_axis_negative_3", "4d_axis2", "4d_axis_negative_2", "4d_axis3",
                 "4d_axis_negative_1", "default_axis", "2d_axis1", "2d_axis_negative_1",
                 "3d_axis1_epsilon", "3d_axis_negative_2_epsilon", "3d_axis2_epsilon",
                 "3d_axis_negative_1_epsilon")},
    **{f"test_shape{k}": "the output is the input's shape, a constant"
       for k in ("", "_example", "_start_1", "_end_1", "_start_negative_1", "_end_negative_1",
                 "_start_1_end_negative_1", "_start_1_end_2", "_clip_start", "_clip_end",
                 "_start_greater_than_end")},
    **{f"test_slice{k}": BATCH_AXIS
       for k in ("", "_default_axes", "_default_steps", "_neg_steps", "_negative_axes")},
    "test_slice_start_out_of_bounds": "an empty result",
    **{f"test_split_{k}_opset{v}": NO_BATCH
       for k in ("equal_parts_1d", "variable_parts_1d", "equal_parts_default_axis",
                 "variable_parts_default_axis", "zero_size_splits") for v in (13, 18)},
    "test_split_1d_uneven_split_opset18": NO_BATCH,
    "test_squeeze": BATCH_AXIS, "test_unsqueeze_axis_0": BATCH_AXIS,
    "test_if": "a condition given as an input (fastconv runs one graph for every input)",
    "test_if_seq": "sequence-typed values", "test_if_opt": "optional values",
    "test_gelu_tanh_1": "GELU's tanh approximation",
    "test_gelu_tanh_2": "GELU's tanh approximation",
    **{name: "an exponent per element (fastconv's Pow takes one exponent)"
       for name in ("test_pow", "test_pow_example", "test_pow_bcast_array",
                    "test_pow_types_float32_int64",
                    "test_pow_types_float32_int32", "test_pow_types_float32_uint64",
                    "test_pow_types_float32_uint32")},
    "test_group_normalization_example_expanded": "the scale is a batchless input",
    "test_group_normalization_epsilon_expanded": "the scale is a batchless input",
    "test_mvn_expanded": BATCH_AXIS, "test_mvn_expanded_ver18": BATCH_AXIS,
    "test_rotary_embedding_no_position_ids_expanded": "a Split with an empty output",
    "test_rotary_embedding_no_position_ids_interleaved_expanded": "a Split with an empty output",
    "test_castlike_FLOAT_to_DOUBLE_expanded": "the output type comes from a batchless input",
    "test_castlike_DOUBLE_to_FLOAT_expanded": "the output type comes from a batchless input",
    }

#: ONNX element types of fastconv's inputs and outputs: FLOAT and DOUBLE (every test whose graph
#: takes data or gives results of another type must fail with the clear error; casts between
#: them must pass)
FLOAT_TYPES = (1, 11)


def _expected_failure(case):
    """Why ``case`` must fail with UnsupportedOnnxError, or None where it must pass."""
    if case.name in EXPECTED_FAILURES:
        return EXPECTED_FAILURES[case.name]
    graph = case.model.graph
    weights = _weight_inputs(case.model)  # bound as constants: any element type
    data = [v for v in graph.input if v.name not in weights]
    if any(v.type.tensor_type.elem_type not in FLOAT_TYPES for v in data + list(graph.output)):
        return NOT_FLOAT
    return None


def _array(value):
    """A node test's input or reference as a NumPy array (some are kept as TensorProtos)."""
    from onnx import numpy_helper

    return value if isinstance(value, np.ndarray) else (
        numpy_helper.to_array(value) if hasattr(value, "data_type") else np.asarray(value))

#: Operators fastconv imports beyond the issue's list, whose ONNX node tests are not collected
#: (they take two computed tensors; fastconv's forms take a constant operand).
NOT_COLLECTED = {"Transpose"}


#: Supported operators none of whose node tests fastconv can run (each test's graph is one
#: fastconv cannot hold: a batchless shape as the output, a condition given as an input, the
#: extra outputs of a layer norm), and the tests that cover them instead
COVERED_ELSEWHERE = {
    "ConstantOfShape": "tests/test_onnx_import.py (constants folded at load)",
    "Shape": "tests/test_onnx_modern.py (shape arithmetic), tests/test_torchvision_models.py",
    "If": "tests/test_onnx_modern.py (a constant condition takes its branch)",
    "LayerNormalization": "tests/test_onnx_modern.py, tests/test_torchvision_models.py "
                          "(convnext_tiny)",
}


def _node_cases():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own numpy warnings
        cases = node.collect_testcases(None)
    wanted = set(SUPPORTED_OPS) - NOT_COLLECTED
    out = []
    for case in cases:
        ops = [n.op_type for n in case.model.graph.node]
        if ops and ops[0] in wanted and all(o in SUPPORTED_OPS for o in ops):
            out.append(case)
    return out


CASES = _node_cases()


def test_every_supported_operator_has_node_tests():
    ops = {c.model.graph.node[0].op_type for c in CASES}
    assert ops == set(SUPPORTED_OPS) - NOT_COLLECTED
    assert set(EXPECTED_FAILURES) <= {c.name for c in CASES}, "a listed test no longer exists"


def test_node_test_counts_per_operator():
    """The node tests that run per operator, and how many of them must pass (printed with -s
    for the records; a supported operator with no passing test fails)."""
    runs, passes = {}, {}
    for case in CASES:
        op = case.model.graph.node[0].op_type
        runs[op] = runs.get(op, 0) + 1
        passes[op] = passes.get(op, 0) + (_expected_failure(case) is None)
    for op in sorted(runs):
        print(f"{op}: {passes[op]} of {runs[op]} node tests must pass")
    assert sorted(op for op in runs if not passes[op]) == sorted(COVERED_ELSEWHERE)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_node(case):
    def run():
        rep = FastconvBackend.prepare(case.model)
        for inputs, refs in case.data_sets:
            outs = rep.run([_array(a) for a in inputs])
            assert len(outs) == len(refs)
            for got, want in zip(outs, refs):
                np.testing.assert_allclose(got, _array(want), rtol=case.rtol, atol=case.atol)

    if _expected_failure(case) is not None:
        with pytest.raises(UnsupportedOnnxError):
            run()
    else:
        run()
