//! The transformers' skip connections, `Add(residual, Linear(x))` after each layer's
//! attention output projection and second MLP layer, taken into the Linear layer's output
//! stage ([`super::linear::LinearF32`], [`super::int8::Int8Linear`]).
//!
//! tract runs each of those Adds as its own pass with a fresh output tensor: on a 2-vCPU
//! AMD EPYC (Zen 3) 24 of them took 2.4 ms of a 90 ms int8 ViT-B/32 pass, about 0.1 ms for
//! 50 x 768 values. When tract fuses its optimised graph, a Linear op whose only reader is
//! such an Add (directly, or through a Reshape that keeps the values' order, as the int8
//! graph's `[M, N] -> [B, T, N]`) becomes the same op reading the residual as one more
//! input: the kernel adds it to each output value after the bias, `residual + y` as the
//! graph's Add computes it (float addition commutes), so the result is bit-identical. Only
//! an f32 Add whose other operand has the Add's own shape (no broadcasting) is taken.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, OptBinByScalar, OptBinUnicast, TypedBinOp};
use tract_onnx::tract_core::ops::change_axes::{AxisOp, IntoShape};
use tract_onnx::tract_core::ops::math::Add;
use tract_onnx::tract_hir::internal::*;

/// A Linear op whose output stage can add a residual.
pub(crate) trait TakesResidual: TypedOp + Clone {
    /// Whether this op already reads a residual (its last input).
    fn has_residual(&self) -> bool;
    /// The same op, reading a residual as one more (last) input.
    fn with_residual(&self) -> Self;
}

/// The residual Add after `node` (running `op`), if there is one this module takes (see the
/// module documentation): (the Reshape in between, if any; the Add; the Add's other input).
fn residual_add<'m>(
    op: &impl TakesResidual,
    model: &'m TypedModel,
    node: &TypedNode,
) -> TractResult<Option<(Option<&'m TypedNode>, &'m TypedNode, OutletId)>> {
    if op.has_residual() {
        return Ok(None);
    }
    let Some(mut next) = model.single_succ(node.id)? else {
        return Ok(None);
    };
    let mut reshape = None;
    // Reshapes and unit axes keep the values' order (a moved axis does not), as does the
    // `IntoShape` tract makes of them where shapes are concrete.
    let keeps_order = next
        .op_as::<AxisOp>()
        .is_some_and(|op| !matches!(op, AxisOp::Move(..)))
        || next.op_is::<IntoShape>();
    if keeps_order {
        reshape = Some(next);
        let Some(after) = model.single_succ(next.id)? else {
            return Ok(None);
        };
        next = after;
    }
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

/// `TypedOp::fuse` for the Linear ops: the patch that replaces `node` and the residual Add
/// after it (and the Reshape in between, re-wired after the new op) by `op` reading the
/// residual, or `None` where there is no such Add.
pub(crate) fn fuse_residual(
    op: &impl TakesResidual,
    model: &TypedModel,
    node: &TypedNode,
) -> TractResult<Option<TypedModelPatch>> {
    let Some((reshape, add, residual)) = residual_add(op, model, node)? else {
        return Ok(None);
    };
    let mut patch = TypedModelPatch::default();
    let mut inputs = patch.taps(model, &node.inputs)?;
    inputs.push(patch.tap_model(model, residual)?);
    let mut wire = patch.wire_node(&node.name, op.with_residual(), &inputs)?;
    if let Some(reshape) = reshape {
        wire = patch.wire_node(&reshape.name, reshape.op.clone(), &wire)?;
    }
    patch.shunt_outside(model, OutletId::new(add.id, 0), wire[0])?;
    Ok(Some(patch))
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
