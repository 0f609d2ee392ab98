//! The output stage the Linear ops ([`super::linear::LinearF32`], [`super::int8::Int8Linear`])
//! share ([`OutputStage`]: bias, QuickGELU, residual), and what they take into it from the
//! graph after them when tract fuses its optimised graph:
//!
//! - **QuickGELU** ([`super::transformer_ops`]), the MLP's activation after its first Linear
//!   layer, when it alone reads the op's output (directly, or through a Reshape that keeps
//!   the values' order). The kernels compute it with the same function on the biased
//!   product, so the values are the same bit for bit, and the pass over the MLP's widest
//!   activation (50 x 3072 values an image, 77 x 2048 a phrase) is gone.
//! - **The skip connections**, `Add(residual, Linear(x))` after each layer's attention
//!   output projection and second MLP layer. tract runs each of those Adds as its own pass
//!   with a fresh output tensor: on a 2-vCPU AMD EPYC (Zen 3) 24 of them took 2.4 ms of a
//!   90 ms int8 ViT-B/32 pass, about 0.1 ms for 50 x 768 values. A Linear op whose only
//!   reader is such an Add (directly, or through a Reshape that keeps the values' order, as
//!   the int8 graph's `[M, N] -> [B, T, N]`) becomes the same op reading the residual as one
//!   more input: the kernel adds it to each output value after the bias (and QuickGELU),
//!   `residual + y` as the graph's Add computes it (float addition commutes), so the result
//!   is bit-identical. Only an f32 Add whose other operand has the Add's own shape (no
//!   broadcasting) is taken.
//!
//! The output stage's order is the graph's: bias, QuickGELU, residual. An op that already
//! adds a residual takes no QuickGELU after it.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, OptBinByScalar, OptBinUnicast, TypedBinOp};
use tract_onnx::tract_core::ops::change_axes::{AxisOp, IntoShape};
use tract_onnx::tract_core::ops::math::Add;
use tract_onnx::tract_hir::internal::*;

use std::sync::Arc;

use super::transformer_ops::{Kind, Unary};
use crate::kernels::Epilogue;

/// What a Linear op ([`super::linear::LinearF32`], [`super::int8::Int8Linear`]) applies to
/// its product in the kernel's output stage, in the graph's order: its bias, the QuickGELU
/// it took, the residual it took (then read as its last input).
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputStage {
    pub bias: Option<Arc<[f32]>>,
    /// QuickGELU's alpha, when the op took the QuickGELU that alone read its output.
    pub quick_gelu: Option<f32>,
    /// Whether the op took the skip connection's Add (and reads the residual).
    pub residual: bool,
}

impl OutputStage {
    /// The bias alone.
    pub fn bias(bias: Option<Arc<[f32]>>) -> Self {
        OutputStage {
            bias,
            ..OutputStage::default()
        }
    }

    /// The kernels' [`Epilogue`] of this stage, with the `residual` read from the op's
    /// inputs ([`residual_input`]).
    pub fn epilogue<'a>(&'a self, residual: Option<&'a [f32]>) -> Epilogue<'a> {
        Epilogue {
            bias: self.bias.as_deref(),
            quick_gelu: self.quick_gelu,
            residual,
        }
    }

    /// What the op's `info` line says of the stage: ", bias", ", QuickGELU", ", residual"
    /// for each step it applies.
    pub fn info(&self) -> String {
        format!(
            "{}{}{}",
            if self.bias.is_some() { ", bias" } else { "" },
            if self.quick_gelu.is_some() {
                ", QuickGELU"
            } else {
                ""
            },
            if self.residual { ", residual" } else { "" }
        )
    }
}

impl PartialEq for OutputStage {
    fn eq(&self, other: &Self) -> bool {
        self.bias == other.bias
            && self.quick_gelu.map(f32::to_bits) == other.quick_gelu.map(f32::to_bits)
            && self.residual == other.residual
    }
}

impl Eq for OutputStage {}

/// A Linear op whose output stage ([`OutputStage`]) can apply QuickGELU and add a residual.
pub(crate) trait WithOutputStage: TypedOp + Clone {
    /// The op's output stage.
    fn output_stage(&self) -> &OutputStage;
    /// The same op with the output stage `stage`.
    fn with_output_stage(&self, stage: OutputStage) -> Self;

    /// Whether this op already reads a residual (its last input).
    fn has_residual(&self) -> bool {
        self.output_stage().residual
    }

    /// The same op, reading a residual as one more (last) input.
    fn with_residual(&self) -> Self {
        self.with_output_stage(OutputStage {
            residual: true,
            ..self.output_stage().clone()
        })
    }

    /// Whether this op already applies QuickGELU.
    fn has_quick_gelu(&self) -> bool {
        self.output_stage().quick_gelu.is_some()
    }

    /// The same op, applying QuickGELU with `alpha` after the bias.
    fn with_quick_gelu(&self, alpha: f32) -> Self {
        self.with_output_stage(OutputStage {
            quick_gelu: Some(alpha),
            ..self.output_stage().clone()
        })
    }
}

/// The one reader of `node`'s output, looking through a Reshape (or unit axes) that keeps
/// the values' order, as the `IntoShape` tract makes of them where shapes are concrete (a
/// moved axis does not): (the Reshape, if any; the reader).
fn single_reader<'m>(
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(Option<&'m TypedNode>, &'m TypedNode)>> {
    let Some(next) = model.single_succ(node.id)? else {
        return Ok(None);
    };
    let keeps_order = next
        .op_as::<AxisOp>()
        .is_some_and(|op| !matches!(op, AxisOp::Move(..)))
        || next.op_is::<IntoShape>();
    if !keeps_order {
        return Ok(Some((None, next)));
    }
    Ok(model.single_succ(next.id)?.map(|after| (Some(next), after)))
}

/// The patch that replaces `node`, the Reshape after it if any and `reader` by `new_op`
/// wired on `node`'s inputs (plus `extra`), followed by the Reshape.
fn replace_through(
    model: &TypedModel,
    node: &TypedNode,
    new_op: impl TypedOp,
    extra: Option<OutletId>,
    reshape: Option<&TypedNode>,
    reader: &TypedNode,
) -> TractResult<TypedModelPatch> {
    let mut patch = TypedModelPatch::default();
    let mut inputs = patch.taps(model, &node.inputs)?;
    if let Some(extra) = extra {
        inputs.push(patch.tap_model(model, extra)?);
    }
    let mut wire = patch.wire_node(&node.name, new_op, &inputs)?;
    if let Some(reshape) = reshape {
        wire = patch.wire_node(&reshape.name, reshape.op.clone(), &wire)?;
    }
    patch.shunt_outside(model, OutletId::new(reader.id, 0), wire[0])?;
    Ok(patch)
}

/// `TypedOp::fuse` for the Linear ops: takes the QuickGELU or the residual Add after `node`
/// into `op` (see the module documentation), or `None` where there is neither.
pub(crate) fn fuse_output_stage(
    op: &impl WithOutputStage,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    if let Some(patch) = fuse_quick_gelu(op, model, node)? {
        return Ok(Some(patch));
    }
    fuse_residual(op, model, node)
}

/// The patch taking the QuickGELU that alone reads `node`'s output into `op`.
fn fuse_quick_gelu(
    op: &impl WithOutputStage,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    if op.has_quick_gelu() || op.has_residual() {
        return Ok(None);
    }
    let Some((reshape, next)) = single_reader(model, node)? else {
        return Ok(None);
    };
    let Some(&Unary(Kind::QuickGelu { alpha })) = next.op_as::<Unary>() else {
        return Ok(None);
    };
    let ours = OutletId::new(reshape.unwrap_or(node).id, 0);
    if next.inputs[..] != [ours] {
        return Ok(None);
    }
    let op = op.with_quick_gelu(alpha);
    replace_through(model, node, op, None, reshape, next).map(Some)
}

/// The residual Add after `node` (running `op`), if there is one this module takes (see the
/// module documentation): (the Reshape in between, if any; the Add; the Add's other input).
fn residual_add<'m>(
    op: &impl WithOutputStage,
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(Option<&'m TypedNode>, &'m TypedNode, OutletId)>> {
    if op.has_residual() {
        return Ok(None);
    }
    let Some((reshape, next)) = single_reader(model, node)? else {
        return Ok(None);
    };
    // tract's Add, before or after its code generation (operands of equal shapes, checked
    // below, make each of them the elementwise sum).
    let is_add = |mini: &dyn BinMiniOp| mini.is::<Add>();
    let add = next.op_as::<TypedBinOp>().is_some_and(|op| is_add(&*op.0))
        || next
            .op_as::<OptBinUnicast>()
            .is_some_and(|op| is_add(&*op.binop))
        || next
            .op_as::<OptBinByScalar>()
            .is_some_and(|op| is_add(&*op.binop));
    if !add || next.inputs.len() != 2 {
        return Ok(None);
    }
    let ours = OutletId::new(reshape.unwrap_or(node).id, 0);
    let other = match (next.inputs[0] == ours, next.inputs[1] == ours) {
        (true, false) => next.inputs[1],
        (false, true) => next.inputs[0],
        _ => return Ok(None),
    };
    let (ours, theirs, sum) = (
        model.outlet_fact(ours)?,
        model.outlet_fact(other)?,
        model.outlet_fact(OutletId::new(next.id, 0))?,
    );
    let f32_dt = f32::datum_type();
    if ours.datum_type != f32_dt
        || theirs.datum_type != f32_dt
        || sum.datum_type != f32_dt
        || theirs.shape != ours.shape
        || sum.shape != ours.shape
    {
        return Ok(None);
    }
    Ok(Some((reshape, next, other)))
}

/// The patch taking the residual Add after `node` into `op` (reading the residual as one
/// more input; the Reshape in between, if any, re-wired after the new op).
fn fuse_residual(
    op: &impl WithOutputStage,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    let Some((reshape, add, residual)) = residual_add(op, model, node)? else {
        return Ok(None);
    };
    replace_through(
        model,
        node,
        op.with_residual(),
        Some(residual),
        reshape,
        add,
    )
    .map(Some)
}

/// The residual input of an op evaluated with `inputs` (`takes`: whether it reads one, as
/// its last input), checked to hold `len` values.
pub(crate) fn residual_input(
    takes: bool,
    inputs: &[TValue],
    len: usize,
) -> TractResult<Option<&TValue>> {
    if !takes {
        return Ok(None);
    }
    let r = inputs.last().context("residual input missing")?;
    ensure!(
        r.datum_type() == f32::datum_type() && r.len() == len,
        "residual of type {:?} and shape {:?}, expected {len} f32 values",
        r.datum_type(),
        r.shape()
    );
    Ok(Some(r))
}
