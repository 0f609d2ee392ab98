//! Fused kernels for two elementwise spots of CLIP's transformers (image and text towers,
//! fp32 and int8 graphs alike):
//!
//! - attention softmax over the last axis: rows of 50 tokens (ViT-B/32) or of the phrase's
//!   length are too short for tract's row kernels, which then cost ~0.7 us per row (5 ms per
//!   ViT-B/32 image);
//! - QuickGELU, `x * sigmoid(1.702 * x)`, exported as Mul, Sigmoid, Mul: three passes over
//!   the MLP's widest activation.
//!
//! Before parsing, the engine rewrites those ONNX nodes into one op each, computed in one
//! pass with a vectorisable `exp` (relative error < 4e-7 over the range used; results
//! differ from tract's own kernels by rounding only). Masked attention scores (large
//! negative or -inf) come out as ~1e-38 instead of 0 before normalisation: no effect on
//! the result at f32 precision.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::parallel::rows_in_place;
use super::rewrite::{attr, fused_node, is_onnx, onnx_opset, scalar_f32, GraphIndex, Rewrite};
use super::Signature;
use crate::kernels::activation::{exp, quick_gelu_value};

const SOFTMAX_OP: &str = "ClipPerceptionSoftmaxLastAxis";
const QUICK_GELU_OP: &str = "ClipPerceptionQuickGelu";
const TANH_GELU_OP: &str = "ClipPerceptionTanhGelu";

/// Registers the fused ops with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(SOFTMAX_OP, parse_softmax);
    onnx.op_register.insert(QUICK_GELU_OP, parse_quick_gelu);
    onnx.op_register.insert(TANH_GELU_OP, parse_tanh_gelu);
}

/// How many nodes [`fuse`] replaced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fused {
    pub softmax: usize,
    pub quick_gelu: usize,
    pub tanh_gelu: usize,
}

/// The value of a scalar f32 constant: an initializer or a `Constant` node's tensor.
pub(crate) fn constant_f32(g: &GraphIndex, tensor: &str) -> Option<f32> {
    if let Some(v) = g.init_f32(tensor) {
        return Some(v);
    }
    let node = &g.nodes[g.produced_by(tensor, "Constant")?];
    scalar_f32(attr(node, "value")?.t.as_ref()?)
}

/// The QuickGELU chain ending at the Mul `node`: Mul(x, Sigmoid(Mul(x, alpha))).
/// Returns (the other nodes of the chain, x, alpha).
fn quick_gelu_chain(g: &GraphIndex, node: &NodeProto) -> Option<(Vec<usize>, String, f32)> {
    if node.op_type != "Mul" || node.input.len() != 2 {
        return None;
    }
    let x = &node.input[0];
    let sig = g.produced_by(&node.input[1], "Sigmoid")?;
    let scaled = g.produced_by(&g.nodes[sig].input[0], "Mul")?;
    let s = &g.nodes[scaled];
    if s.input.len() != 2 || s.input[0] != *x {
        return None;
    }
    let alpha = constant_f32(g, &s.input[1])?;
    if !g.single_use(&s.output[0]) || !g.single_use(&g.nodes[sig].output[0]) {
        return None;
    }
    let mut chain = vec![scaled, sig];
    // The Constant node holding alpha goes too, when nothing else reads it.
    if let Some(k) = g.produced_by(&s.input[1], "Constant") {
        if g.single_use(&s.input[1]) {
            chain.push(k);
        }
    }
    Some((chain, x.clone(), alpha))
}

/// The inputs of the binary `op` node `ix` when one of them is the scalar constant `value`
/// (within 1e-6): (the other input, the constant's tensor name).
fn with_constant(g: &GraphIndex, ix: usize, op: &str, value: Option<f32>) -> Option<(String, f32)> {
    let n = &g.nodes[ix];
    if n.op_type != op || n.input.len() != 2 || !is_onnx(n) {
        return None;
    }
    for (c, other) in [(&n.input[0], &n.input[1]), (&n.input[1], &n.input[0])] {
        if let Some(v) = constant_f32(g, c) {
            if value.is_none_or(|want| (v - want).abs() <= 1e-6) {
                return Some((other.clone(), v));
            }
        }
    }
    None
}

/// The tanh-approximated GELU chain ending at the Mul `node` (transformers'
/// `gelu_pytorch_tanh`, SigLIP's MLP, as torch exports it):
/// `Mul(Mul(x, Add(1, Tanh(Mul(c, Add(x, Mul(k, Mul(x, Mul(x, x)))))))), 0.5)`, operands of
/// Add and Mul in either order. Returns (the other nodes of the chain, x, c, k).
fn tanh_gelu_chain(g: &GraphIndex, node: &NodeProto) -> Option<(Vec<usize>, String, f32, f32)> {
    let ix = g.producer(&node.output[0])?;
    let (p, _) = with_constant(g, ix, "Mul", Some(0.5))?;
    let prod = g.produced_by(&p, "Mul")?;
    let pn = &g.nodes[prod];
    if pn.input.len() != 2 {
        return None;
    }
    // Mul(x, Add(1, Tanh(..))): find which input is the Add.
    let (x, add1) = [(&pn.input[0], &pn.input[1]), (&pn.input[1], &pn.input[0])]
        .into_iter()
        .find_map(|(x, b)| {
            let a = g.produced_by(b, "Add")?;
            with_constant(g, a, "Add", Some(1.0)).map(|(t, _)| (x.clone(), (a, t)))
        })?;
    let (add1, t) = add1;
    let tanh = g.produced_by(&t, "Tanh")?;
    let scaled = g.producer(&g.nodes[tanh].input[0])?;
    let (u, c) = with_constant(g, scaled, "Mul", None)?;
    let add_x = g.produced_by(&u, "Add")?;
    let an = &g.nodes[add_x];
    let v = match (&an.input[0], &an.input[1]) {
        (a, b) if *a == x => b.clone(),
        (a, b) if *b == x => a.clone(),
        _ => return None,
    };
    let mul_k = g.producer(&v)?;
    let (w, k) = with_constant(g, mul_k, "Mul", None)?;
    // x^3 as Mul(x, Mul(x, x)) or Mul(Mul(x, x), x).
    let cube = g.produced_by(&w, "Mul")?;
    let cn = &g.nodes[cube];
    let square_of = |name: &String| {
        let sq = g.produced_by(name, "Mul")?;
        (g.nodes[sq].input.len() == 2 && g.nodes[sq].input.iter().all(|i| *i == x)).then_some(sq)
    };
    let square = match (&cn.input[0], &cn.input[1]) {
        (a, b) if *a == x => square_of(b)?,
        (a, b) if *b == x => square_of(a)?,
        _ => return None,
    };
    let chain = vec![prod, add1, tanh, scaled, add_x, mul_k, cube, square];
    let single = chain.iter().all(|&i| g.single_use(&g.nodes[i].output[0]));
    single.then_some((chain, x, c, k))
}

/// Rewrites `Softmax(axis=-1)` (opset >= 13) and `Mul(x, Sigmoid(Mul(x, c)))` into the
/// fused ops. Everything else is left untouched.
pub fn fuse(model: &mut ModelProto) -> Fused {
    let opset = onnx_opset(model);
    let Some(graph) = model.graph.as_mut() else {
        return Fused::default();
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    for (ix, node) in g.nodes.iter().enumerate() {
        let output = vec![node.output[0].clone()];
        // Before opset 13 Softmax flattens trailing axes; only the per-axis form is fused.
        if node.op_type == "Softmax"
            && is_onnx(node)
            && opset >= 13
            && node.input.len() == 1
            && attr(node, "axis").is_none_or(|a| a.i == -1)
        {
            let fused = fused_node(node, SOFTMAX_OP, node.input.clone(), output, &[]);
            rewrite.replace(ix, fused);
        } else if let Some((chain, x, alpha)) = quick_gelu_chain(&g, node) {
            chain.into_iter().for_each(|i| rewrite.remove(i));
            let fused = fused_node(node, QUICK_GELU_OP, vec![x], output, &[("alpha", alpha)]);
            rewrite.replace(ix, fused);
        } else if let Some((chain, x, c, k)) = tanh_gelu_chain(&g, node) {
            if chain.iter().all(|&i| !rewrite.is_removed(i)) {
                chain.into_iter().for_each(|i| rewrite.remove(i));
                let fused = fused_node(node, TANH_GELU_OP, vec![x], output, &[("c", c), ("k", k)]);
                rewrite.replace(ix, fused);
            }
        }
    }
    let inserted = rewrite.apply(graph);
    let count = |op: &str| inserted.get(op).copied().unwrap_or(0);
    Fused {
        softmax: count(SOFTMAX_OP),
        quick_gelu: count(QUICK_GELU_OP),
        tanh_gelu: count(TANH_GELU_OP),
    }
}

fn parse_softmax(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(Unary(Kind::Softmax)), vec![]))
}

fn parse_quick_gelu(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let alpha = attr(node, "alpha").map(|a| a.f).unwrap_or(1.702);
    Ok((expand(Unary(Kind::QuickGelu { alpha })), vec![]))
}

fn parse_tanh_gelu(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let get = |name: &str| {
        attr(node, name)
            .map(|a| a.f)
            .with_context(|| format!("{TANH_GELU_OP} node without its {name}"))
    };
    Ok((
        expand(Unary(Kind::TanhGelu {
            c: get("c")?,
            k: get("k")?,
        })),
        vec![],
    ))
}

/// Which fused op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Softmax over the last axis.
    Softmax,
    /// `x * sigmoid(alpha * x)`.
    QuickGelu { alpha: f32 },
    /// `0.5 x (1 + tanh(c (x + k x^3)))` (c = sqrt(2 / pi), k = 0.044715 as exported).
    TanhGelu { c: f32, k: f32 },
}

/// One f32 tensor in, the same shape out.
#[derive(Debug, Clone, PartialEq)]
pub struct Unary(pub Kind);

impl Eq for Unary {}

impl Expansion for Unary {
    fn name(&self) -> StaticName {
        match self.0 {
            Kind::Softmax => SOFTMAX_OP.into(),
            Kind::QuickGelu { .. } => QUICK_GELU_OP.into(),
            Kind::TanhGelu { .. } => TANH_GELU_OP.into(),
        }
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        let signature = Signature {
            inputs: &[DatumType::F32],
            optional: 0,
            outputs: &[DatumType::F32],
        };
        signature.rules(s, inputs, outputs, &Expansion::name(self))?;
        s.equals(&inputs[0].shape, &outputs[0].shape)
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

/// Softmax of one row, in place (also the last step of [`super::attention`]'s scores).
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let mut max = f32::NEG_INFINITY;
    for &v in row.iter() {
        max = if v > max { v } else { max };
    }
    // exp in its own pass (vectorised), then the sum in order.
    for v in row.iter_mut() {
        *v = exp(*v - max);
    }
    let mut sum = 0f32;
    for &v in row.iter() {
        sum += v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

multiversion!(softmax_rows(data: &mut [f32], len: usize) -> () {
    for row in data.chunks_exact_mut(len) {
        softmax_row(row);
    }
});

/// The tanh-approximated GELU of one value: `0.5 x (1 + tanh(u))` with
/// `u = c (x + k x^3)` is `x / (1 + e^(-2u))` (since `1 + tanh(u) = 2 / (1 + e^(-2u))`),
/// computed with the vectorisable [`exp`]; it differs from the graph's chain by rounding.
#[inline(always)]
fn tanh_gelu_value(x: f32, c: f32, k: f32) -> f32 {
    let u = c * (x + k * (x * (x * x)));
    x / (1.0 + exp(-2.0 * u))
}

multiversion!(tanh_gelu(data: &mut [f32], c: f32, k: f32) -> () {
    for v in data.iter_mut() {
        *v = tanh_gelu_value(*v, c, k);
    }
});

multiversion!(quick_gelu(data: &mut [f32], alpha: f32) -> () {
    for v in data.iter_mut() {
        *v = quick_gelu_value(*v, alpha);
    }
});

/// Computes `kind` in place on `data`, rows of `len` values (the last axis), spread over the
/// engine's thread pool where that pays; the same result on any number of threads.
fn apply(kind: Kind, data: &mut [f32], len: usize) {
    if len == 0 {
        return;
    }
    let op = |rows: &mut [f32]| match kind {
        Kind::Softmax => softmax_rows(rows, len),
        Kind::QuickGelu { alpha } => quick_gelu(rows, alpha),
        Kind::TanhGelu { c, k } => tanh_gelu(rows, c, k),
    };
    rows_in_place(data, len, op);
}

impl Op for Unary {
    fn name(&self) -> StaticName {
        match self.0 {
            Kind::Softmax => "SoftmaxLastAxis".into(),
            Kind::QuickGelu { .. } => "QuickGelu".into(),
            Kind::TanhGelu { .. } => "TanhGelu".into(),
        }
    }

    op_as_typed_op!();
}

impl EvalOp for Unary {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // Taken, not cloned: computed in place, with no copy when no other op reads it.
        let mut t = inputs.swap_remove(0).into_tensor();
        let len = *t.shape().last().context("rank-0 input")?;
        {
            let mut ram = t.try_as_plain_ram_mut()?;
            let data = ram.as_slice_mut::<f32>()?;
            apply(self.0, data, len);
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for Unary {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_quick_gelu_match_f64_references() {
        let row: Vec<f32> = (0..50)
            .map(|i| ((i * 37) % 23) as f32 * 0.7 - 8.0)
            .collect();
        let mut data = [row.clone(), row.iter().map(|v| v * -3.0).collect()].concat();
        softmax_rows(&mut data, 50);
        for (chunk, scale) in data.chunks(50).zip([1.0f64, -3.0]) {
            let xs: Vec<f64> = row.iter().map(|&v| v as f64 * scale).collect();
            let max = xs.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = xs.iter().map(|v| (v - max).exp()).sum();
            for (got, x) in chunk.iter().zip(&xs) {
                let want = (x - max).exp() / sum;
                assert!(
                    (*got as f64 - want).abs() <= 2e-6 * want.max(1e-3),
                    "{got} vs {want}"
                );
            }
        }
        let xs: Vec<f32> = (-200..200).map(|i| i as f32 * 0.05).collect();
        let mut ys = xs.clone();
        quick_gelu(&mut ys, 1.702);
        for (x, y) in xs.iter().zip(&ys) {
            let x = *x as f64;
            let want = x / (1.0 + (-1.702 * x).exp());
            assert!(
                (*y as f64 - want).abs() <= 1e-6 * want.abs().max(1e-2),
                "{x}: {y} vs {want}"
            );
        }
    }

    #[test]
    fn a_pool_of_threads_gives_the_same_result_as_one() {
        let pool = tract_linalg::multithread::Executor::multithread(2);
        // ViT-B/32's attention (12 heads x 50 x 50) and MLP (50 x 3072), rows not a multiple
        // of the task count, and a size that stays on the caller.
        for (kind, rows, len) in [
            (Kind::Softmax, 12 * 50, 50),
            (Kind::Softmax, 7, 4099),
            (Kind::QuickGelu { alpha: 1.702 }, 50, 3072),
            (Kind::QuickGelu { alpha: 1.702 }, 3, 100),
            (
                Kind::TanhGelu {
                    c: 0.797_884_6,
                    k: 0.044_715,
                },
                197,
                3072,
            ),
        ] {
            let data: Vec<f32> = (0..rows * len)
                .map(|i| ((i * 7919) % 2003) as f32 * 0.01 - 10.0)
                .collect();
            let mut one = data.clone();
            apply(kind, &mut one, len);
            let mut two = data.clone();
            tract_linalg::multithread::multithread_tract_scope(pool.clone(), || {
                apply(kind, &mut two, len)
            });
            assert_eq!(one, two, "{kind:?} {rows}x{len}");
            assert_ne!(one, data);
        }
    }

    #[test]
    fn fuses_the_tiny_fixture_vision_tower() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-clip/image_encoder.onnx"
        );
        let mut proto = tract_onnx::onnx().proto_model_for_path(path).unwrap();
        let fused = fuse(&mut proto);
        assert_eq!(
            fused,
            Fused {
                softmax: 2,
                quick_gelu: 2,
                tanh_gelu: 0
            }
        );
    }

    /// The tiny SigLIP fixture's MLPs use the tanh GELU (two layers in each tower); its
    /// towers are compared with PyTorch through the fused op in `tests/families.rs`.
    #[test]
    fn fuses_the_tiny_siglip_towers_tanh_gelu() {
        for file in ["image_encoder.onnx", "text_encoder.onnx"] {
            let path = format!(
                "{}/tests/fixtures/tiny-siglip/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let mut proto = tract_onnx::onnx().proto_model_for_path(&path).unwrap();
            let fused = fuse(&mut proto);
            assert!(fused.tanh_gelu >= 2, "{file}: {fused:?}");
        }
    }

    /// `x / (1 + e^(-2u))` against `0.5 x (1 + tanh(u))` in f64, over the MLP's range.
    #[test]
    fn tanh_gelu_matches_its_definition() {
        let (c, k) = ((2.0f64 / std::f64::consts::PI).sqrt() as f32, 0.044715f32);
        let xs: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.01).collect();
        let mut ys = xs.clone();
        tanh_gelu(&mut ys, c, k);
        for (x, y) in xs.iter().zip(&ys) {
            let x = f64::from(*x);
            let u = f64::from(c) * (x + f64::from(k) * x * x * x);
            let want = 0.5 * x * (1.0 + u.tanh());
            assert!(
                (f64::from(*y) - want).abs() <= 1e-6 * want.abs().max(1e-2),
                "{x}: {y} vs {want}"
            );
        }
    }
}
