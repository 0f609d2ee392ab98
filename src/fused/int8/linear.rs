//! [`Int8Linear`]: an int8 Linear layer on the engine's own int8 product
//! ([`crate::kernels::int8_gemm`]): the weight packed once, the graph's dequantization, the
//! bias and what the op took from the graph after it (`fused::output_stage`) in the
//! product's output stage.
//!
//! The engine's loader packs each weight straight from the ONNX file's decoded bytes,
//! before tract parses the graph ([`prepack`]), and drops the initializer: the weight is
//! then never also a tract tensor (`fused::prepack`). The op also takes its weight as a
//! constant input (a graph fused without prepacking, a weight that two nodes share).

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{GraphProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::fused::output_stage::{fuse_output_stage, residual_input, OutputStage, WithOutputStage};
use crate::fused::parallel::engine_pool;
use crate::fused::prepack::{lookup, prepack_nodes, PrepackedWeights};
use crate::fused::rewrite::attr;
use crate::fused::{constant_f32_vector, constant_input, Signature};
use crate::kernels::int8_gemm::{self, Int8Kernel, PackedB};

pub(super) const LINEAR_OP: &str = "ClipPerceptionInt8Linear";

/// The kernel a fused node names (its `kernel` attribute), if this CPU has it.
fn node_kernel(node: &NodeProto) -> TractResult<Int8Kernel> {
    let name = attr(node, "kernel")
        .map(|a| a.s.as_slice())
        .unwrap_or_default();
    Int8Kernel::available()
        .into_iter()
        .find(|k| k.name().as_bytes() == name)
        .with_context(|| {
            format!(
                "{LINEAR_OP}: kernel `{}` is not available on this CPU",
                String::from_utf8_lossy(name)
            )
        })
}

/// Packs the weight of every fused Linear node whose weight is an int8 [K, N] initializer
/// read by it alone, straight from the initializer's bytes ([`prepack_nodes`]). Nodes whose
/// kernel this CPU lacks are left for `parse` to refuse.
pub(super) fn prepack(graph: &mut GraphProto) -> PrepackedWeights {
    prepack_nodes(
        graph,
        LINEAR_OP,
        2,
        super::ONNX_INT8 as i32,
        |node, t, k, n| {
            let kernel = node_kernel(node).ok()?;
            let values: Vec<i8> = if t.raw_data.len() == k * n {
                t.raw_data.iter().map(|&b| b as i8).collect()
            } else if t.int32_data.len() == k * n {
                t.int32_data.iter().map(|&v| v as i8).collect()
            } else {
                return None;
            };
            Some(Arc::new(PackedB::pack(&values, k, n, kernel)))
        },
    )
}

pub(super) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let kernel = node_kernel(node)?;
    let prepacked = lookup::<PackedB>(node)?;
    Ok((expand(Int8LinearExpansion { kernel, prepacked }), vec![]))
}

#[derive(Debug, Clone)]
struct Int8LinearExpansion {
    kernel: Int8Kernel,
    /// The weight packed before parsing ([`prepack`]); `None`: the weight is input 2.
    prepacked: Option<Arc<PackedB>>,
}

impl Int8LinearExpansion {
    /// The input index of the column scales (the bias follows it).
    fn col_scale_input(&self) -> usize {
        if self.prepacked.is_some() {
            2
        } else {
            3
        }
    }
}

impl Expansion for Int8LinearExpansion {
    fn name(&self) -> StaticName {
        LINEAR_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        // q, its row scales, the weight (unless packed before parsing), its column scales
        // and an optional bias.
        let types: &[DatumType] = match self.prepacked {
            Some(_) => &[
                DatumType::I8,
                DatumType::F32,
                DatumType::F32,
                DatumType::F32,
            ],
            None => &[
                DatumType::I8,
                DatumType::F32,
                DatumType::I8,
                DatumType::F32,
                DatumType::F32,
            ],
        };
        let signature = Signature {
            inputs: types,
            optional: 1,
            outputs: &[DatumType::F32],
        };
        signature.rules(s, inputs, outputs, LINEAR_OP)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        match &self.prepacked {
            Some(packed) => {
                s.equals(&inputs[0].shape[1], packed.k().to_dim())?;
                s.equals(&outputs[0].shape[1], packed.n().to_dim())
            }
            None => {
                s.equals(&inputs[2].rank, 2)?;
                s.equals(&outputs[0].shape[1], &inputs[2].shape[1])
            }
        }
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let names = (prefix, LINEAR_OP);
        let packed = match &self.prepacked {
            Some(packed) => packed.clone(),
            None => {
                let weight = constant_input(model, inputs, 2, names)?;
                let &[k, n] = weight.shape() else {
                    bail!("{prefix}: weight of shape {:?}", weight.shape());
                };
                let w = weight.try_as_plain_ram()?;
                Arc::new(PackedB::pack(w.as_slice::<i8>()?, k, n, self.kernel))
            }
        };
        let n = packed.n();
        let vector = |i: usize| constant_f32_vector(model, inputs, i, n, names);
        let cols = self.col_scale_input();
        let op = Int8Linear {
            packed,
            col_scale: vector(cols)?,
            stage: OutputStage::bias(if inputs.len() == cols + 2 {
                Some(vector(cols + 1)?)
            } else {
                None
            }),
        };
        model.wire_node(prefix, op, &inputs[..2])
    }
}

/// `y[i, j] = (float(q x W)[i, j] * col_scale[j]) * row_scale[i] (+ bias[j])`: the int8
/// product of [`crate::kernels::int8_gemm`] on the weight packed at load, with the graph's
/// dequantization (and bias) in its output stage, then QuickGELU and the residual when it
/// took them (`fused::output_stage`). Inputs: q [M, K] int8, row_scale [M, 1], and the
/// residual (M x N values, any shape) when it took the skip connection's Add.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    packed: Arc<PackedB>,
    col_scale: Arc<[f32]>,
    /// The bias, and the QuickGELU and residual Add the op took
    /// (`fused::output_stage`).
    stage: OutputStage,
}

impl PartialEq for Int8Linear {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed)
            && self.col_scale == other.col_scale
            && self.stage == other.stage
    }
}

impl WithOutputStage for Int8Linear {
    fn output_stage(&self) -> &OutputStage {
        &self.stage
    }

    fn with_output_stage(&self, stage: OutputStage) -> Self {
        Int8Linear {
            stage,
            ..self.clone()
        }
    }
}

impl Eq for Int8Linear {}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "Int8Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "int8 {}x{} ({} kernel){}",
            self.packed.k(),
            self.packed.n(),
            self.packed.kernel().name(),
            self.stage.info()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (k, n) = (self.packed.k(), self.packed.n());
        let q = &inputs[0];
        let &[m, qk] = q.shape() else {
            bail!(
                "Int8Linear: input of shape {:?}, expected [M, {k}]",
                q.shape()
            );
        };
        ensure!(
            qk == k,
            "Int8Linear: input of shape {:?}, expected [M, {k}]",
            q.shape()
        );
        let q_ram = q.try_as_plain_ram()?;
        let rows_ram = inputs[1].try_as_plain_ram()?;
        let rows = rows_ram.as_slice::<f32>()?;
        ensure!(
            rows.len() == m,
            "Int8Linear: {} row scales for {m} rows",
            rows.len()
        );
        // SAFETY: f32 has no invalid bit patterns, and `gemm` writes every one of the m*n
        // outputs (its blocks cover the output) before it is read.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&[m, n])? };
        {
            let residual = residual_input(self.stage.residual, &inputs, m * n)?
                .map(|r| r.try_as_plain_ram())
                .transpose()?;
            let residual = residual.as_ref().map(|r| r.as_slice::<f32>()).transpose()?;
            let mut ov = out.try_as_plain_ram_mut()?;
            let output = int8_gemm::Output::Dequantize {
                out: ov.as_slice_mut::<f32>()?,
                row_scale: rows,
                col_scale: &self.col_scale,
                epilogue: self.stage.epilogue(residual),
            };
            let pool = engine_pool();
            int8_gemm::gemm(
                q_ram.as_slice::<i8>()?,
                m,
                &self.packed,
                output,
                pool.as_deref(),
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].rank() == 2,
            "Int8Linear: input of rank {}",
            inputs[0].rank()
        );
        Ok(tvec!(f32::fact([
            inputs[0].shape[0].clone(),
            self.packed.n().to_dim()
        ])))
    }

    fn fuse(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        fuse_output_stage(self, model, node)
    }

    as_op!();
}
