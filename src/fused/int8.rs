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

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::rewrite::{attr, fused_node, GraphIndex, Rewrite, ONNX_FLOAT};

const QUANTIZE_OP: &str = "ClipPerceptionQuantizeRows";
const DEQUANTIZE_OP: &str = "ClipPerceptionDequantizeRows";
/// ONNX TensorProto data type of int8.
const ONNX_INT8: i64 = 3;

/// Registers the fused ops with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(QUANTIZE_OP, parse_quantize);
    onnx.op_register.insert(DEQUANTIZE_OP, parse_dequantize);
}

/// How many chains [`fuse`] replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fused {
    pub quantize: usize,
    pub dequantize: usize,
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
    row_scales: &[String],
) -> Option<([usize; 2], String, String, String)> {
    let nodes = g.nodes;
    if outer.op_type != "Mul" || outer.input.len() != 2 {
        return None;
    }
    let [a, row_scale] = [&outer.input[0], &outer.input[1]];
    if !row_scales.contains(row_scale) {
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

/// Rewrites the quantize and dequantize chains of a `dynamic-symmetric` int8 graph into
/// the fused ops (see the module docs). Everything else is left untouched.
pub fn fuse(model: &mut ModelProto) -> Fused {
    let Some(graph) = model.graph.as_mut() else {
        return Fused::default();
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    let mut row_scales: Vec<String> = Vec::new();
    for (ix, cast) in g.nodes.iter().enumerate() {
        let Some((chain, x, scale, eps)) = quantize_chain(&g, cast) else {
            continue;
        };
        chain.into_iter().for_each(|i| rewrite.remove(i));
        let outputs = vec![cast.output[0].clone(), scale.clone()];
        let node = fused_node(cast, QUANTIZE_OP, vec![x], outputs, &[("eps", eps)]);
        rewrite.replace(ix, node);
        row_scales.push(scale);
    }
    for (ix, outer) in g.nodes.iter().enumerate() {
        if rewrite.is_removed(ix) {
            continue;
        }
        let Some((chain, acc, cols, rows)) = dequantize_chain(&g, outer, &row_scales) else {
            continue;
        };
        chain.into_iter().for_each(|i| rewrite.remove(i));
        let outputs = vec![outer.output[0].clone()];
        let node = fused_node(outer, DEQUANTIZE_OP, vec![acc, rows, cols], outputs, &[]);
        rewrite.replace(ix, node);
    }
    let inserted = rewrite.apply(graph);
    let count = |op: &str| inserted.get(op).copied().unwrap_or(0);
    Fused {
        quantize: count(QUANTIZE_OP),
        dequantize: count(DEQUANTIZE_OP),
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
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, i8::datum_type())?;
        s.equals(&outputs[1].datum_type, f32::datum_type())?;
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
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, i32::datum_type())?;
        s.equals(&inputs[1].datum_type, f32::datum_type())?;
        s.equals(&inputs[2].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
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
        let mut scales = unsafe { Tensor::uninitialized::<f32>(&rows_shape)? };
        {
            let x = input.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut qv = q.try_as_plain_ram_mut()?;
            let qs = qv.as_slice_mut::<i8>()?;
            let mut sv = scales.try_as_plain_ram_mut()?;
            let ss = sv.as_slice_mut::<f32>()?;
            if k > 0 {
                quantize_rows(x, qs, ss, k, self.eps);
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

    /// The fused graph computes exactly what the quantizer's standard-ONNX graph does.
    #[test]
    fn fused_graph_equals_the_unfused_graph_bit_for_bit() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-clip/image_encoder_int8.onnx"
        ));
        let onnx = tract_onnx::onnx();
        let mut proto = onnx.proto_model_for_path(path).unwrap();
        let fused = fuse(&mut proto);
        // Two layers: (q/k/v input, out_proj, fc1, fc2) each, plus the projection.
        assert_eq!(
            fused,
            Fused {
                quantize: 9,
                dequantize: 13
            }
        );
        let run = |int8: bool| -> Vec<f32> {
            let fusions = crate::model::encoder::Fusions {
                int8,
                transformer: false,
            };
            let bytes = std::fs::read(path).unwrap();
            let model = crate::model::encoder::parse_onnx(path, &bytes, fusions)
                .unwrap()
                .with_input_fact(0, f32::fact([2, 3, 224, 224]).into())
                .unwrap()
                .into_optimized()
                .unwrap()
                .into_runnable()
                .unwrap();
            let pixels: Vec<f32> = (0..2 * 3 * 224 * 224)
                .map(|i: usize| ((i.wrapping_mul(7919) % 1000) as f32 / 250.0) - 2.0)
                .collect();
            let input = Tensor::from_shape(&[2, 3, 224, 224], &pixels).unwrap();
            let out = model.run(tvec!(input.into())).unwrap();
            out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        let (a, b) = (run(true), run(false));
        assert_eq!(a.len(), 2 * 16);
        assert_eq!(a, b);
    }
}
