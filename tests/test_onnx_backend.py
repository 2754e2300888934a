"""ONNX's own backend node tests (``onnx.backend.test.case.node``, generated offline by the
installed onnx package) for every operator fastconv imports, run through
``fastconv.onnx.backend.FastconvBackend``. Every test of a supported operator runs; those
outside the supported semantics are listed in EXPECTED_FAILURES with the reason, and must fail
with fastconv's clear UnsupportedOnnxError (never a wrong answer). fastconv models take batches:
the adapter runs a batchless graph of value-by-value operators as a batch of one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")

from fastconv.onnx import SUPPORTED_OPS, UnsupportedOnnxError  # noqa: E402
from fastconv.onnx.backend import FastconvBackend  # noqa: E402

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
    }

#: Operators fastconv imports beyond the issue's list, whose ONNX node tests are not collected
#: (they take two computed tensors; fastconv's forms take a constant operand).
NOT_COLLECTED = {"Mul", "Sub", "Div", "Transpose"}


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


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_node(case):
    def run():
        rep = FastconvBackend.prepare(case.model)
        for inputs, refs in case.data_sets:
            outs = rep.run([np.asarray(a) for a in inputs])
            assert len(outs) == len(refs)
            for got, want in zip(outs, refs):
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)

    if case.name in EXPECTED_FAILURES:
        with pytest.raises(UnsupportedOnnxError):
            run()
    else:
        run()
