//! [`DequantizeRows`]: the dequantization after tract's integer product,
//! `(float(acc) * col_scale) * row_scale`, as one op in one pass, with the graph's fp32
//! operations in its order.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::fused::Signature;

pub(super) const DEQUANTIZE_OP: &str = "ClipPerceptionDequantizeRows";

pub(super) fn parse(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(DequantizeRowsExpansion), vec![]))
}

#[derive(Debug, Clone)]
struct DequantizeRowsExpansion;

impl Expansion for DequantizeRowsExpansion {
    fn name(&self) -> StaticName {
        DEQUANTIZE_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        // The accumulators, the row scales and the column scales.
        let signature = Signature {
            inputs: &[DatumType::I32, DatumType::F32, DatumType::F32],
            optional: 0,
            outputs: &[DatumType::F32],
        };
        signature.rules(s, inputs, outputs, DEQUANTIZE_OP)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, DequantizeRows, inputs)
    }
}

multiversion!(dequantize_rows(acc: &[i32], out: &mut [f32], rows: &[f32], cols: &[f32]) -> () {
    let m = cols.len();
    for ((a, o), &r) in acc.chunks_exact(m).zip(out.chunks_exact_mut(m)).zip(rows) {
        for ((y, &v), &c) in o.iter_mut().zip(a).zip(cols) {
            *y = (v as f32 * c) * r;
        }
    }
});

/// y[i, j] = (acc[i, j] as f32 * col_scale[j]) * row_scale[i].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DequantizeRows;

impl Op for DequantizeRows {
    fn name(&self) -> StaticName {
        "DequantizeRows".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DequantizeRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let acc = &inputs[0];
        let shape = acc.shape();
        let m = *shape.last().context("DequantizeRows: rank-0 input")?;
        let acc_ram = acc.try_as_plain_ram()?;
        let acc_s = acc_ram.as_slice::<i32>()?;
        let rows_ram = inputs[1].try_as_plain_ram()?;
        let rows = rows_ram.as_slice::<f32>()?;
        let cols_ram = inputs[2].try_as_plain_ram()?;
        let cols = cols_ram.as_slice::<f32>()?;
        ensure!(
            cols.len() == m && rows.len() * m == acc_s.len(),
            "DequantizeRows: accumulators {:?}, {} row scales, {} column scales",
            shape,
            rows.len(),
            cols.len()
        );
        // SAFETY: f32 has no invalid bit patterns, and `dequantize_rows` writes every one of
        // the rows*m outputs (checked above: rows.len() * m == acc.len()) before it is read;
        // with m = 0 the tensor has no elements.
        let mut out = unsafe { Tensor::uninitialized::<f32>(shape)? };
        {
            let mut ov = out.try_as_plain_ram_mut()?;
            let os = ov.as_slice_mut::<f32>()?;
            if m > 0 {
                dequantize_rows(acc_s, os, rows, cols);
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DequantizeRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}
