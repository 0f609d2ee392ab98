//! Fused kernels for the int8 image encoder written by `models/quantize.py`
//! (form `dynamic-symmetric`).
//!
//! The quantizer writes every integer product in standard ONNX, so any runtime can run
//! the graph:
//!
//! ```text
//! rows  = Reshape(x, [-1, K])
//! scale = Max(ReduceMax(Abs(rows), axes=[-1], keepdims=1), eps) / 127     (one per row)
//! q     = Cast<int8>(Round(rows / scale))
//! acc   = MatMulInteger(q, W_int8)                                        (int32)
//! y     = (Cast<float>(acc) * w_scale) * scale                            (w_scale per column)
//! ```
//!
//! tract runs each of those elementwise ops as its own pass over memory, which costs about
//! as much as the integer products themselves. Before parsing, the engine rewrites the
//! two elementwise chains into one op each, [`QuantizeRows`] (two passes: abs-max, then
//! divide-round-cast) and [`DequantizeRows`] (one pass), computing exactly the same
//! arithmetic in the same order, so results equal the unfused graph's (and onnxruntime's)
//! bit for bit. A chain that does not have exactly this shape is left as it is.
//!
//! Where the engine's own int8 product runs ([`Int8Choice`], by default on CPUs with
//! AVX-512 VNNI, and on CPUs with AVX2 and no VNNI; `CLIP_PERCEPTION_INT8_KERNEL` forces
//! one), the integer product, the dequantize
//! chain and the Linear layer's bias Add after the `Reshape` that follows it
//! (`Add(bias, Reshape(y))`, bias [N]) become one op instead, [`Int8Linear`]: the weight
//! is packed once when the op is built, and the kernel's output stage computes
//! `(float(acc) * w_scale) * scale + bias` with the graph's fp32 operations in its order
//! ([`crate::kernels::int8_gemm`]), again bit-identical to the unfused graph.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use std::collections::HashMap;

use super::output_stage::{fuse_output_stage, residual_input, OutputStage, WithOutputStage};
use super::parallel::row_tasks;
use super::rewrite::{attr, fused_node, GraphIndex, Rewrite, ONNX_FLOAT};
use super::{constant_f32_vector, constant_input, Signature};
use crate::kernels::int8_gemm::{self, Int8Choice, Int8Kernel, PackedB};

const QUANTIZE_OP: &str = "ClipPerceptionQuantizeRows";
const DEQUANTIZE_OP: &str = "ClipPerceptionDequantizeRows";
const LINEAR_OP: &str = "ClipPerceptionInt8Linear";
/// ONNX TensorProto data type of int64.
const ONNX_INT64: i32 = 7;
/// ONNX TensorProto data type of int8.
const ONNX_INT8: i64 = 3;

/// Registers the fused ops with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(QUANTIZE_OP, parse_quantize);
    onnx.op_register.insert(DEQUANTIZE_OP, parse_dequantize);
    onnx.op_register.insert(LINEAR_OP, parse_linear);
}

/// How many chains [`fuse`] replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fused {
    pub quantize: usize,
    /// Dequantize chains run as [`DequantizeRows`] after tract's integer product.
    pub dequantize: usize,
    /// Integer products with their dequantize chain run as [`Int8Linear`].
    pub linear: usize,
    /// Of those, how many took the bias Add in too.
    pub bias: usize,
}

/// Whether a ReduceMax reduces the last axis only, keeping it (attribute or input form).
fn reduces_last_axis(g: &GraphIndex, r: &NodeProto) -> bool {
    let keepdims = attr(r, "keepdims").is_none_or(|a| a.i == 1);
    let axes_last = match (attr(r, "axes"), r.input.get(1)) {
        (Some(a), None) => a.ints == [-1],
        (None, Some(name)) => g.inits.get(name.as_str()).is_some_and(|t| {
            t.int64_data == [-1]
                || (t.raw_data.len() == 8
                    && i64::from_le_bytes(t.raw_data[..8].try_into().unwrap()) == -1)
        }),
        _ => false,
    };
    keepdims && axes_last
}

/// The quantize chain ending at the int8 Cast `cast`:
/// Cast<int8>(Round(Div(x, Div(Max(ReduceMax(Abs(x)), eps), 127)))).
/// Returns (the other nodes of the chain, x, the row-scale tensor, eps).
fn quantize_chain(g: &GraphIndex, cast: &NodeProto) -> Option<([usize; 6], String, String, f32)> {
    let nodes = g.nodes;
    if cast.op_type != "Cast"
        || attr(cast, "to").is_none_or(|a| a.i != ONNX_INT8)
        || cast.input.len() != 1
    {
        return None;
    }
    let round = g.produced_by(&cast.input[0], "Round")?;
    let div = g.produced_by(&nodes[round].input[0], "Div")?;
    let [x, scale] = [&nodes[div].input[0], &nodes[div].input[1]];
    let scale_div = g.produced_by(scale, "Div")?;
    if g.init_f32(&nodes[scale_div].input[1])? != 127.0 {
        return None;
    }
    let max = g.produced_by(&nodes[scale_div].input[0], "Max")?;
    let eps = g.init_f32(nodes[max].input.get(1)?)?;
    let reduce = g.produced_by(&nodes[max].input[0], "ReduceMax")?;
    if !reduces_last_axis(g, &nodes[reduce]) {
        return None;
    }
    let abs = g.produced_by(&nodes[reduce].input[0], "Abs")?;
    if nodes[abs].input[0] != *x {
        return None;
    }
    let chain = [abs, reduce, max, scale_div, div, round];
    // Every intermediate but the scale (which the fused op outputs) is read by the chain only.
    let private = [abs, reduce, max, div, round];
    if !private.iter().all(|&i| g.single_use(&nodes[i].output[0])) {
        return None;
    }
    Some((chain, x.clone(), scale.clone(), eps))
}

/// The dequantize chain ending at the Mul `outer`:
/// Mul(Mul(Cast<float>(MatMulInteger(..)), w_scale), row_scale), `row_scale` one of
/// `row_scales`. Returns (the other nodes of the chain, the accumulators, column scale,
/// row scale).
fn dequantize_chain(
    g: &GraphIndex,
    outer: &NodeProto,
    row_scales: &HashMap<String, String>,
) -> Option<([usize; 2], String, String, String)> {
    let nodes = g.nodes;
    if outer.op_type != "Mul" || outer.input.len() != 2 {
        return None;
    }
    let [a, row_scale] = [&outer.input[0], &outer.input[1]];
    if !row_scales.contains_key(row_scale) {
        return None;
    }
    let inner = g.produced_by(a, "Mul")?;
    let [c, col_scale] = [&nodes[inner].input[0], &nodes[inner].input[1]];
    let cols = g.inits.get(col_scale.as_str())?;
    if cols.data_type != ONNX_FLOAT as i32 || cols.dims.len() != 1 {
        return None;
    }
    let cast = g.produced_by(c, "Cast")?;
    if attr(&nodes[cast], "to").is_none_or(|a| a.i != ONNX_FLOAT) {
        return None;
    }
    let acc = &nodes[cast].input[0];
    g.produced_by(acc, "MatMulInteger")?;
    if !g.single_use(a) || !g.single_use(c) {
        return None;
    }
    Some((
        [inner, cast],
        acc.clone(),
        col_scale.clone(),
        row_scale.clone(),
    ))
}

/// The integer product producing `acc`, `MatMulInteger(q, W)` with `q` the quantized
/// activation and `W` an int8 [K, N] initializer (no zero points), N the number of column
/// scales. Returns (its node, W's name, N).
fn linear_product(
    g: &GraphIndex,
    acc: &str,
    q: &str,
    col_scale: &str,
) -> Option<(usize, String, usize)> {
    let mm = g.produced_by(acc, "MatMulInteger")?;
    let node = &g.nodes[mm];
    if node.input.len() != 2 || node.input[0] != q || !g.single_use(acc) {
        return None;
    }
    let w = g.inits.get(node.input[1].as_str())?;
    let n = g.inits.get(col_scale)?.dims.first().copied()?;
    if w.data_type != ONNX_INT8 as i32 || w.dims.len() != 2 || w.dims[1] != n || n <= 0 {
        return None;
    }
    Some((mm, node.input[1].clone(), n as usize))
}

/// The int64 values of an initializer.
fn init_i64s(g: &GraphIndex, tensor: &str) -> Option<Vec<i64>> {
    let t = g.inits.get(tensor)?;
    if t.data_type != ONNX_INT64 {
        return None;
    }
    if !t.int64_data.is_empty() {
        return Some(t.int64_data.clone());
    }
    (t.raw_data.len() % 8 == 0).then(|| {
        t.raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    })
}

/// The Linear layer's bias after the dequantized rows `y` [M, N]:
/// `Add(bias, Reshape(y, Concat(.., [N])))` (either Add operand order), bias an f32 [N]
/// initializer. Returns (the Reshape, the Add, the bias's name).
fn bias_add(g: &GraphIndex, y: &str, n: usize) -> Option<(usize, usize, String)> {
    let reshape = g.single_reader(y)?;
    let r = &g.nodes[reshape];
    if r.op_type != "Reshape" || r.input.len() != 2 || r.input[0] != y {
        return None;
    }
    // The new shape keeps the last axis: N, so a bias [N] adds along the same columns.
    let concat = &g.nodes[g.produced_by(&r.input[1], "Concat")?];
    if init_i64s(g, concat.input.last()?)? != [n as i64] {
        return None;
    }
    let add = g.single_reader(&r.output[0])?;
    let a = &g.nodes[add];
    if a.op_type != "Add" || a.input.len() != 2 {
        return None;
    }
    let bias = if a.input[1] == r.output[0] {
        &a.input[0]
    } else {
        &a.input[1]
    };
    let b = g.inits.get(bias.as_str())?;
    if b.data_type != ONNX_FLOAT as i32 || b.dims != [n as i64] {
        return None;
    }
    Some((reshape, add, bias.clone()))
}

/// Rewrites the quantize and dequantize chains of a `dynamic-symmetric` int8 graph into
/// the fused ops (see the module docs), with the int8 product chosen by
/// `CLIP_PERCEPTION_INT8_KERNEL` ([`Int8Choice::from_env`]). Everything else is left
/// untouched.
pub fn fuse(model: &mut ModelProto) -> Fused {
    fuse_with(model, Int8Choice::from_env())
}

/// [`fuse`] with the int8 product given: with [`Int8Choice::Own`], each integer product
/// and its dequantize chain (and bias) become one [`Int8Linear`].
pub fn fuse_with(model: &mut ModelProto, choice: Int8Choice) -> Fused {
    let Some(graph) = model.graph.as_mut() else {
        return Fused::default();
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    // Row-scale tensor -> its quantized activation.
    let mut row_scales: HashMap<String, String> = HashMap::new();
    for (ix, cast) in g.nodes.iter().enumerate() {
        let Some((chain, x, scale, eps)) = quantize_chain(&g, cast) else {
            continue;
        };
        chain.into_iter().for_each(|i| rewrite.remove(i));
        let outputs = vec![cast.output[0].clone(), scale.clone()];
        let node = fused_node(cast, QUANTIZE_OP, vec![x], outputs, &[("eps", eps)]);
        rewrite.replace(ix, node);
        row_scales.insert(scale, cast.output[0].clone());
    }
    let mut linear = 0;
    let mut bias = 0;
    for (ix, outer) in g.nodes.iter().enumerate() {
        if rewrite.is_removed(ix) {
            continue;
        }
        let Some((chain, acc, cols, rows)) = dequantize_chain(&g, outer, &row_scales) else {
            continue;
        };
        let product = match choice {
            Int8Choice::Own(kernel) => {
                linear_product(&g, &acc, &row_scales[&rows], &cols).map(|p| (kernel, p))
            }
            Int8Choice::Tract => None,
        };
        chain.into_iter().for_each(|i| rewrite.remove(i));
        let outputs = vec![outer.output[0].clone()];
        let Some((kernel, (mm, weight, n))) = product else {
            let node = fused_node(outer, DEQUANTIZE_OP, vec![acc, rows, cols], outputs, &[]);
            rewrite.replace(ix, node);
            continue;
        };
        rewrite.remove(mm);
        let q = row_scales[&rows].clone();
        let mut inputs = vec![q, rows, weight, cols];
        if let Some((reshape, add, b)) = bias_add(&g, &outer.output[0], n) {
            // The Reshape now produces the Add's output; the op adds the bias.
            let mut unflatten = g.nodes[reshape].clone();
            unflatten.output[0] = g.nodes[add].output[0].clone();
            rewrite.replace(reshape, unflatten);
            rewrite.remove(add);
            inputs.push(b);
            bias += 1;
        }
        let mut node = fused_node(outer, LINEAR_OP, inputs, outputs, &[]);
        node.attribute.push(tract_onnx::pb::AttributeProto {
            name: "kernel".into(),
            s: kernel.name().as_bytes().to_vec(),
            r#type: 3, // STRING
            ..Default::default()
        });
        rewrite.replace(ix, node);
        linear += 1;
    }
    let inserted = rewrite.apply(graph);
    let count = |op: &str| inserted.get(op).copied().unwrap_or(0);
    Fused {
        quantize: count(QUANTIZE_OP),
        dequantize: count(DEQUANTIZE_OP),
        linear,
        bias,
    }
}

fn parse_quantize(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let eps = attr(node, "eps").map(|a| a.f).unwrap_or(0.0);
    Ok((expand(QuantizeRowsExpansion { eps }), vec![]))
}

fn parse_dequantize(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(DequantizeRowsExpansion), vec![]))
}

fn parse_linear(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let name = attr(node, "kernel")
        .map(|a| a.s.as_slice())
        .unwrap_or_default();
    let kernel = Int8Kernel::available()
        .into_iter()
        .find(|k| k.name().as_bytes() == name)
        .with_context(|| {
            format!(
                "{LINEAR_OP}: kernel `{}` is not available on this CPU",
                String::from_utf8_lossy(name)
            )
        })?;
    Ok((expand(Int8LinearExpansion { kernel }), vec![]))
}

#[derive(Debug, Clone)]
struct QuantizeRowsExpansion {
    eps: f32,
}

impl Expansion for QuantizeRowsExpansion {
    fn name(&self) -> StaticName {
        QUANTIZE_OP.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        // x to its int8 values and its row scales.
        let signature = Signature {
            inputs: &[DatumType::F32],
            optional: 0,
            outputs: &[DatumType::I8, DatumType::F32],
        };
        signature.rules(s, inputs, outputs, QUANTIZE_OP)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        s.equals(&inputs[0].rank, &outputs[1].rank)?;
        s.given(&inputs[0].shape, move |s, shape| {
            let mut rows = shape.clone();
            if let Some(last) = rows.last_mut() {
                *last = 1.to_dim();
            }
            s.equals(&outputs[1].shape, rows)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, QuantizeRows { eps: self.eps }, inputs)
    }
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

/// Rounds to the nearest integer, ties to even, for |v| < 2^22: adding 1.5 * 2^23 makes
/// the float addition's default rounding do it, and the integer is read off the sum's
/// bits (no float-to-int conversion, which vectorises poorly with Rust's saturating
/// semantics, and no call to `rintf`).
#[inline(always)]
fn round_to_int_small(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Per row: scale = max(max|x|, eps) / 127, q = round_ties_even(x / scale) as i8.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeRows {
    pub eps: f32,
}

impl Eq for QuantizeRows {}

multiversion!(quantize_rows(x: &[f32], q: &mut [i8], scales: &mut [f32], k: usize, eps: f32) -> () {
    for ((row, out), s) in x.chunks_exact(k).zip(q.chunks_exact_mut(k)).zip(scales) {
        *s = quantize_row(row, out, eps);
    }
});

/// [`quantize_rows`] spread over the engine's thread pool where that pays (each row on one
/// thread: the same result on any number of threads).
fn quantize_all_rows(x: &[f32], q: &mut [i8], scales: &mut [f32], k: usize, eps: f32) {
    match row_tasks(scales.len(), k) {
        Some((pool, per_task)) => pool.install(|| {
            use rayon::prelude::*;
            x.par_chunks(per_task * k)
                .zip(q.par_chunks_mut(per_task * k))
                .zip(scales.par_chunks_mut(per_task))
                .for_each(|((x, q), s)| quantize_rows(x, q, s, k, eps))
        }),
        None => quantize_rows(x, q, scales, k, eps),
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

/// One row: returns its scale, writes its int8 values.
#[inline(always)]
fn quantize_row(row: &[f32], out: &mut [i8], eps: f32) -> f32 {
    {
        const LANES: usize = 16;
        let mut lanes = [0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (m, v) in lanes.iter_mut().zip(chunk) {
                let a = v.abs();
                *m = if a > *m { a } else { *m };
            }
        }
        let mut amax = tail.iter().fold(0f32, |m, v| m.max(v.abs()));
        for m in lanes {
            amax = amax.max(m);
        }
        let scale = amax.max(eps) / 127.0;
        for (q, &v) in out.iter_mut().zip(row) {
            // |v / scale| <= 127 by construction.
            *q = round_to_int_small(v / scale) as i8;
        }
        scale
    }
}

impl Op for QuantizeRows {
    fn name(&self) -> StaticName {
        "QuantizeRows".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("symmetric int8 per row, eps {}", self.eps)])
    }

    op_as_typed_op!();
}

impl EvalOp for QuantizeRows {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let shape = input.shape();
        let k = *shape.last().context("QuantizeRows: rank-0 input")?;
        let mut rows_shape: TVec<usize> = shape.into();
        if let Some(last) = rows_shape.last_mut() {
            *last = 1;
        }
        // SAFETY: i8 and f32 have no invalid bit patterns, and every element is written
        // before either tensor is read: `quantize_rows` writes all rows*k values of `q` and
        // one scale per row (with k = 0 there are no values, and the scales are zeroed).
        let mut q = unsafe { Tensor::uninitialized::<i8>(shape)? };
        // SAFETY: as for `q`: every scale is written before it is read.
        let mut scales = unsafe { Tensor::uninitialized::<f32>(&rows_shape)? };
        {
            let x = input.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut qv = q.try_as_plain_ram_mut()?;
            let qs = qv.as_slice_mut::<i8>()?;
            let mut sv = scales.try_as_plain_ram_mut()?;
            let ss = sv.as_slice_mut::<f32>()?;
            if k > 0 {
                quantize_all_rows(x, qs, ss, k, self.eps);
            } else {
                ss.fill(0.0);
            }
        }
        Ok(tvec!(q.into_tvalue(), scales.into_tvalue()))
    }
}

impl TypedOp for QuantizeRows {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut rows = inputs[0].shape.to_tvec();
        if let Some(last) = rows.last_mut() {
            *last = 1.to_dim();
        }
        Ok(tvec!(
            i8::fact(inputs[0].shape.clone()),
            f32::fact(ShapeFact::from_dims(rows))
        ))
    }

    as_op!();
}

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

#[derive(Debug, Clone)]
struct Int8LinearExpansion {
    kernel: Int8Kernel,
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
        // q, its row scales, the weight, its column scales and an optional bias.
        let signature = Signature {
            inputs: &[
                DatumType::I8,
                DatumType::F32,
                DatumType::I8,
                DatumType::F32,
                DatumType::F32,
            ],
            optional: 1,
            outputs: &[DatumType::F32],
        };
        signature.rules(s, inputs, outputs, LINEAR_OP)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[2].rank, 2)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[2].shape[1])
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let names = (prefix, LINEAR_OP);
        let weight = constant_input(model, inputs, 2, names)?;
        let &[k, n] = weight.shape() else {
            bail!("{prefix}: weight of shape {:?}", weight.shape());
        };
        let w = weight.try_as_plain_ram()?;
        let packed = PackedB::pack(w.as_slice::<i8>()?, k, n, self.kernel);
        let vector = |i: usize| constant_f32_vector(model, inputs, i, n, names);
        let op = Int8Linear {
            packed: Arc::new(packed),
            col_scale: vector(3)?,
            stage: OutputStage::bias(if inputs.len() == 5 {
                Some(vector(4)?)
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
/// took them ([`super::output_stage`]). Inputs: q [M, K] int8, row_scale [M, 1], and the
/// residual (M x N values, any shape) when it took the skip connection's Add.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    packed: Arc<PackedB>,
    col_scale: Arc<[f32]>,
    /// The bias, and the QuickGELU and residual Add the op took
    /// ([`super::output_stage`]).
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
            let executor = tract_linalg::multithread::current_tract_executor();
            let pool = match &executor {
                tract_linalg::multithread::Executor::MultiThread(pool) => Some(&**pool),
                _ => None,
            };
            int8_gemm::gemm(q_ram.as_slice::<i8>()?, m, &self.packed, output, pool);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_ties_to_even() {
        for v in [
            -127.0f32, -2.5, -1.5, -0.5, 0.0, 0.49999997, 0.5, 1.5, 2.5, 3.5, 126.5, 127.0,
        ] {
            assert_eq!(round_to_int_small(v) as f32, v.round_ties_even(), "{v}");
        }
        let mut x = 0.123_f32;
        for _ in 0..10_000 {
            x = (x * 1.618_034 + 0.1).rem_euclid(254.0) - 127.0;
            assert_eq!(round_to_int_small(x) as f32, x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn quantize_rows_matches_the_onnx_definition() {
        let row: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.7)
            .collect();
        let mut q = vec![0i8; row.len()];
        let scale = quantize_row(&row, &mut q, 1e-12);
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(scale, amax.max(1e-12) / 127.0);
        for (v, q) in row.iter().zip(&q) {
            assert_eq!(*q as f32, (v / scale).round_ties_even(), "{v}");
        }
        assert!(q.iter().any(|&v| v == 127 || v == -127));
        // An all-zero row quantizes to zeros (eps keeps the scale finite).
        let mut z = vec![1i8; 5];
        let s = quantize_row(&[0.0; 5], &mut z, 1e-12);
        assert!(s > 0.0 && z.iter().all(|&v| v == 0));
    }

    #[test]
    fn quantizing_on_a_pool_of_threads_gives_the_same_result_as_one() {
        let pool = tract_linalg::multithread::Executor::multithread(2);
        // ViT-B/32's 50 tokens x 768 and x 3072, 9 rows of 4099, 2 small rows (caller only).
        for (rows, k) in [(50, 768), (50, 3072), (9, 4099), (2, 33)] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7919) % 2003) as f32 * 0.01 - 10.0 + (i / k) as f32)
                .collect();
            let run = |threads: bool| {
                let (mut q, mut s) = (vec![0i8; rows * k], vec![0f32; rows]);
                if threads {
                    tract_linalg::multithread::multithread_tract_scope(pool.clone(), || {
                        quantize_all_rows(&x, &mut q, &mut s, k, 1e-12)
                    });
                } else {
                    quantize_all_rows(&x, &mut q, &mut s, k, 1e-12);
                }
                (q, s)
            };
            let one = run(false);
            assert_eq!(one, run(true), "{rows}x{k}");
            assert!(one.1.iter().all(|&s| s > 0.0) && one.0.contains(&127));
        }
    }

    /// The fused graph computes exactly what the quantizer's standard-ONNX graph does, with
    /// tract's integer product and with each of the engine's own kernels this CPU has (on
    /// one thread and on a pool of two).
    #[test]
    fn fused_graph_equals_the_unfused_graph_bit_for_bit() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-clip/image_encoder_int8.onnx"
        ));
        let pixels: Vec<f32> = (0..2 * 3 * 224 * 224)
            .map(|i: usize| ((i.wrapping_mul(7919) % 1000) as f32 / 250.0) - 2.0)
            .collect();
        let input = Tensor::from_shape(&[2, 3, 224, 224], &pixels).unwrap();
        // Runs the graph, fused with `choice` (None: as written); returns the embeddings
        // and how many Int8Linear ops the optimised plan holds (and of them, how many took
        // the skip connection's Add in, and how many QuickGELU: `super::output_stage`).
        // `seven_bit` halves every int8 weight first (all within -64..=64: the vpmaddubsw
        // kernel's own path). `gelu` fuses QuickGELU's Mul, Sigmoid, Mul into the engine's
        // op first (`super::transformer_ops`), which the products can then take in.
        let run = |choice: Option<Int8Choice>,
                   threads: usize,
                   seven_bit: bool,
                   gelu: bool|
         -> (Vec<f32>, [usize; 3]) {
            let mut onnx = tract_onnx::onnx();
            let mut proto = onnx.proto_model_for_path(path).unwrap();
            if gelu {
                crate::fused::transformer_ops::register(&mut onnx);
                let fused = crate::fused::transformer_ops::fuse(&mut proto);
                assert_eq!(fused.quick_gelu, 2);
            }
            if seven_bit {
                let graph = proto.graph.as_mut().unwrap();
                let mut halved = 0;
                for t in graph.initializer.iter_mut() {
                    if t.data_type == 3 && t.dims.len() == 2 {
                        // INT8 weights as raw bytes.
                        assert!(!t.raw_data.is_empty());
                        for v in t.raw_data.iter_mut() {
                            *v = ((*v as i8) / 2) as u8;
                        }
                        halved += 1;
                    }
                }
                assert_eq!(halved, 13);
            }
            if let Some(choice) = choice {
                register(&mut onnx);
                let fused = fuse_with(&mut proto, choice);
                // Two layers: (q/k/v input, out_proj, fc1, fc2) each, plus the projection;
                // every Linear layer but the projection has a bias.
                let want = match choice {
                    Int8Choice::Tract => Fused {
                        quantize: 9,
                        dequantize: 13,
                        linear: 0,
                        bias: 0,
                    },
                    Int8Choice::Own(_) => Fused {
                        quantize: 9,
                        dequantize: 0,
                        linear: 13,
                        bias: 12,
                    },
                };
                assert_eq!(fused, want);
            }
            let model = onnx
                .with_ignore_value_info(true)
                .parse(&proto, path.parent().and_then(|p| p.to_str()))
                .unwrap()
                .model
                .with_input_fact(0, f32::fact([2, 3, 224, 224]).into())
                .unwrap()
                .into_optimized()
                .unwrap();
            let linear: Vec<_> = model
                .nodes()
                .iter()
                .filter(|n| n.op().name() == "Int8Linear")
                .collect();
            let taking = |what: &str| {
                linear
                    .iter()
                    .filter(|n| n.op().info().unwrap().concat().contains(what))
                    .count()
            };
            let linear = [linear.len(), taking("residual"), taking("QuickGELU")];
            let mut options = RunOptions::default();
            if threads > 1 {
                options.executor = Some(tract_linalg::multithread::Executor::multithread(threads));
            }
            let plan = model.into_runnable_with_options(&options).unwrap();
            let out = plan.run(tvec!(input.clone().into())).unwrap();
            let values = out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect();
            (values, linear)
        };
        for (seven_bit, gelu) in [(false, false), (true, false), (false, true), (true, true)] {
            // With `gelu`, the reference runs the engine's QuickGELU as its own pass.
            let (unfused, _) = run(None, 1, seven_bit, gelu);
            assert_eq!(unfused.len(), 2 * 16);
            let (tract, linear) = run(Some(Int8Choice::Tract), 1, seven_bit, gelu);
            assert_eq!(linear, [0, 0, 0]);
            assert_eq!(tract, unfused);
            for kernel in Int8Kernel::available() {
                for threads in [1, 2] {
                    let (own, linear) =
                        run(Some(Int8Choice::Own(kernel)), threads, seven_bit, gelu);
                    let what = format!(
                        "{} kernel, {threads} threads, 7-bit {seven_bit}, QuickGELU op {gelu}",
                        kernel.name()
                    );
                    // out_proj and fc2 of both layers read the residual; fc1 of both
                    // layers takes the QuickGELU op after it, where there is one.
                    let gelus = if gelu { 2 } else { 0 };
                    assert_eq!(linear, [13, 4, gelus], "{what}");
                    assert_eq!(own, unfused, "{what}");
                }
            }
        }
    }

    /// The engine's parse path (`Fusions::int8`) fuses the products as the environment
    /// (or, without it, the CPU) says.
    #[test]
    fn the_encoder_parses_the_fused_products() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-clip/image_encoder_int8.onnx"
        ));
        let fusions = crate::model::encoder::Fusions {
            int8: true,
            transformer: false,
        };
        let bytes = std::fs::read(path).unwrap();
        let model = crate::model::encoder::parse_onnx(path, &bytes, fusions).unwrap();
        let ops = |name: &str| {
            model
                .nodes()
                .iter()
                .filter(|n| n.op().name() == name)
                .count()
        };
        let linear = ops(LINEAR_OP);
        match Int8Choice::from_env() {
            Int8Choice::Own(_) => assert_eq!((linear, ops("MatMulInteger")), (13, 0)),
            Int8Choice::Tract => assert_eq!((linear, ops("MatMulInteger")), (0, 13)),
        }
    }
}
