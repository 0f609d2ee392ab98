//! Fused scaled-dot-product attention for CLIP's transformers (image and text towers, fp32
//! and int8 graphs alike).
//!
//! The exported graphs compute each layer's attention with eight ONNX nodes around the
//! heads' [B, T, H, D] tensors (the Reshape of the q/k/v projections):
//!
//! ```text
//! scores = MatMul(Transpose(q, [0,2,1,3]), Transpose(k, [0,2,3,1])) * scale  (+ mask)
//! out    = Transpose(MatMul(Softmax(scores, axis=-1), Transpose(v, [0,2,1,3])), [0,2,1,3])
//! ```
//!
//! tract runs that as three transposes, two small batched products (for ViT-B/32 twelve
//! 50x64x50 products each, too small for its thread pool), a scale pass, the softmax and
//! one more transpose: about 12% of an int8 ViT-B/32 pass on one thread. Before parsing,
//! the engine rewrites the chain into one op, [`Attention`], which reads q, k and v in
//! their [B, T, H, D] layout, runs each (batch, head) pair as one task on the engine's
//! thread pool (scores, scale, mask, softmax and the weighted sum of v without leaving the
//! cache) and writes the [B, T, H, Dv] result the last Transpose would have made. The
//! operations are the graph's, in its order (dot product, times scale, plus mask, then the
//! softmax of [`super::transformer_ops`]); the products' sums are fused multiply-adds in
//! index order, so results differ from tract's (and onnxruntime's) by rounding only. A
//! chain of any other shape is left as it is.
//!
//! Within a head, two query rows are computed together (each k and v row loaded once for
//! both, eight accumulator chains in flight), 32 key or value columns at a time and the
//! last 8, 16 or 24 as one block; keys are padded to a multiple of 8, not of 32. On a
//! 2-vCPU AMD EPYC (Zen 3) that took the op from 6.5-7.9 to 5.5-6.2 ms of an int8
//! ViT-B/32 pass and from 11-14 to 7-11 ms of a 77-token text pass (`clip_bench --profile`,
//! alternating builds); each output is the same sum in the same order as before.
//!
//! Keys after the last one a pair of query rows can weigh (their mask values at or below
//! -1e30, as the text tower's causal mask above the diagonal) are skipped: no scores, no
//! exp, no weighted sum for them, about half the work of a causal layer. The result is the
//! same as computing them (their weights are exactly 0; see [`live_keys`]). On the same
//! machine the text tower's attention took 7.2 -> 5.6 ms of a 77-token pass at batch 1, 1
//! thread and 37.7 -> 27.8 ms at batch 8, 2 threads (`clip_bench --profile`, medians of
//! 8 and 6 alternating processes).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::parallel::engine_pool;
use super::rewrite::{attr, fused_node, is_onnx, onnx_opset, GraphIndex, Rewrite};
use super::transformer_ops::{constant_f32, softmax_row};
use super::Signature;

const ATTENTION_OP: &str = "ClipPerceptionAttention";

/// Registers the fused op with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(ATTENTION_OP, parse_attention);
}

fn parse_attention(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale = attr(node, "scale")
        .map(|a| a.f)
        .context("attention node without its scale")?;
    Ok((expand(Attention { scale }), vec![]))
}

/// Whether `node` is a Transpose with permutation `perm`.
fn is_transpose(node: &NodeProto, perm: &[i64]) -> bool {
    node.op_type == "Transpose" && attr(node, "perm").is_some_and(|a| a.ints == perm)
}

/// The node producing `tensor` when it has op type `op` and nothing else reads `tensor`.
fn sole(g: &GraphIndex, tensor: &str, op: &str) -> Option<usize> {
    g.produced_by(tensor, op).filter(|_| g.single_use(tensor))
}

/// One attention chain ending at the Transpose `end`.
struct Chain {
    /// Nodes that go (the chain but `end`).
    nodes: Vec<usize>,
    /// q, k, v ([B, T, H, D]) and the optional additive mask.
    inputs: Vec<String>,
    scale: f32,
}

fn chain(g: &GraphIndex, end: &NodeProto, opset: i64) -> Option<Chain> {
    const HEADS_FIRST: [i64; 4] = [0, 2, 1, 3];
    if !is_transpose(end, &HEADS_FIRST) || end.input.len() != 1 {
        return None;
    }
    let weighted = sole(g, &end.input[0], "MatMul")?;
    let [probs, v_t] = &g.nodes[weighted].input[..] else {
        return None;
    };
    let softmax = sole(g, probs, "Softmax")?;
    let sm = &g.nodes[softmax];
    // Before opset 13 Softmax flattens trailing axes; only the per-axis form is fused.
    if opset < 13
        || !is_onnx(sm)
        || sm.input.len() != 1
        || !attr(sm, "axis").is_none_or(|a| matches!(a.i, -1 | 3))
    {
        return None;
    }
    let v_t = sole(g, v_t, "Transpose").filter(|&i| is_transpose(&g.nodes[i], &HEADS_FIRST))?;
    let mut nodes = vec![weighted, softmax, v_t];
    // scores: Mul(product, scale), optionally then Add(_, mask) (in either order).
    let mut mask = None;
    let mut scaled = &sm.input[0];
    if let Some(add) = sole(g, scaled, "Add") {
        let [a, b] = &g.nodes[add].input[..] else {
            return None;
        };
        let (s, m) = if g.produced_by(a, "Mul").is_some() {
            (a, b)
        } else {
            (b, a)
        };
        nodes.push(add);
        mask = Some(m.clone());
        scaled = s;
    }
    let mul = sole(g, scaled, "Mul")?;
    let [a, b] = &g.nodes[mul].input[..] else {
        return None;
    };
    let (product, scale_input, scale) = match (constant_f32(g, a), constant_f32(g, b)) {
        (None, Some(s)) => (a, b, s),
        (Some(s), None) => (b, a, s),
        _ => return None,
    };
    let product = sole(g, product, "MatMul")?;
    let [q_t, k_t] = &g.nodes[product].input[..] else {
        return None;
    };
    let q_t = sole(g, q_t, "Transpose").filter(|&i| is_transpose(&g.nodes[i], &HEADS_FIRST))?;
    let k_t = sole(g, k_t, "Transpose").filter(|&i| is_transpose(&g.nodes[i], &[0, 2, 3, 1]))?;
    nodes.extend([mul, product, q_t, k_t]);
    // The Constant node holding the scale goes too, when nothing else reads it.
    if let Some(k) = sole(g, scale_input, "Constant") {
        nodes.push(k);
    }
    let mut inputs = vec![
        g.nodes[q_t].input[0].clone(),
        g.nodes[k_t].input[0].clone(),
        g.nodes[v_t].input[0].clone(),
    ];
    inputs.extend(mask);
    Some(Chain {
        nodes,
        inputs,
        scale,
    })
}

/// Rewrites every attention chain of the graph (see the module documentation) into one
/// [`Attention`] node; returns how many. Run before [`super::transformer_ops::fuse`],
/// which would otherwise take the chains' Softmax nodes.
pub fn fuse(model: &mut ModelProto) -> usize {
    let opset = onnx_opset(model);
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    for (ix, node) in g.nodes.iter().enumerate() {
        if let Some(chain) = chain(&g, node, opset) {
            chain.nodes.into_iter().for_each(|i| rewrite.remove(i));
            let output = vec![node.output[0].clone()];
            let fused = fused_node(
                node,
                ATTENTION_OP,
                chain.inputs,
                output,
                &[("scale", chain.scale)],
            );
            rewrite.replace(ix, fused);
        }
    }
    rewrite.apply(graph).get(ATTENTION_OP).copied().unwrap_or(0)
}

/// `softmax(q k^T * scale (+ mask)) v` per batch and head. Inputs q [B, T, H, D],
/// k [B, S, H, D], v [B, S, H, Dv] and optionally a mask broadcast to [B, H, T, S]; output
/// [B, T, H, Dv].
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    pub scale: f32,
}

impl Eq for Attention {}

impl Expansion for Attention {
    fn name(&self) -> StaticName {
        ATTENTION_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        // q, k, v and an optional mask.
        let signature = Signature {
            inputs: &[DatumType::F32; 4],
            optional: 1,
            outputs: &[DatumType::F32],
        };
        signature.rules(s, inputs, outputs, ATTENTION_OP)?;
        for input in &inputs[..3] {
            s.equals(&input.rank, 4)?;
        }
        s.equals(&outputs[0].rank, 4)?;
        // The batch broadcasts as the graph's MatMuls broadcast it: a q of batch 1 (SigLIP's
        // pooling probe, when tract has moved its Expand past the q projection) meets k and
        // v of batch B.
        s.given_2(
            &inputs[0].shape[0],
            &inputs[1].shape[0],
            move |s, q_batch, k_batch| {
                s.equals(&outputs[0].shape[0], broadcast_batch(&q_batch, &k_batch))
            },
        )?;
        for axis in 1..3 {
            s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
        }
        s.equals(&outputs[0].shape[3], &inputs[2].shape[3])
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

impl Op for Attention {
    fn name(&self) -> StaticName {
        "Attention".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("scale {}", self.scale)])
    }

    op_as_typed_op!();
}

/// The batch of the output when q has batch `q` and k batch `k`: either is 1 and takes the
/// other's, as a MatMul broadcasts (a mismatch is refused at evaluation).
fn broadcast_batch(q: &TDim, k: &TDim) -> TDim {
    if q.is_one() {
        k.clone()
    } else {
        q.clone()
    }
}

/// q, k or v with its batch axis (axis 0, length 1) repeated `batch` times.
fn repeat_batch(t: &TValue, batch: usize) -> TractResult<TValue> {
    let shape = t.shape();
    let mut tiled = shape.to_vec();
    tiled[0] = batch;
    let one = t.try_as_plain_ram()?;
    let one = one.as_slice::<f32>()?;
    let data: Vec<f32> = (0..batch).flat_map(|_| one.iter().copied()).collect();
    Ok(tract_ndarray::ArrayD::from_shape_vec(tiled, data)?
        .into_tensor()
        .into_tvalue())
}

/// The shapes of one evaluation.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    /// Query and key/value lengths.
    t: usize,
    s: usize,
    heads: usize,
    /// Query/key and value widths.
    d: usize,
    dv: usize,
}

/// Strides of a mask broadcast to [B, H, T, S] (0 along its axes of length 1).
fn mask_strides(shape: &[usize], dims: Dims) -> TractResult<[usize; 4]> {
    ensure!(
        shape.len() <= 4,
        "Attention: mask of shape {shape:?} has more than 4 axes"
    );
    let target = [dims.batch, dims.heads, dims.t, dims.s];
    let mut full = [1usize; 4];
    full[4 - shape.len()..].copy_from_slice(shape);
    let mut strides = [0usize; 4];
    let mut stride = 1;
    for axis in (0..4).rev() {
        ensure!(
            full[axis] == target[axis] || full[axis] == 1,
            "Attention: mask of shape {shape:?} does not broadcast to {target:?}"
        );
        if full[axis] != 1 {
            strides[axis] = stride;
        }
        stride *= full[axis];
    }
    Ok(strides)
}

/// Lanes of one AVX2 register (AVX-512 builds pair them).
const LANES: usize = 8;
/// Columns per wide register block: four accumulators of [`LANES`] per query row.
const BLOCK: usize = 4 * LANES;
/// Query rows computed together: their blocks share each k and v load, and two rows of
/// four accumulators give eight independent chains of fused multiply-adds (enough to
/// cover the instruction's latency on two FMA units).
const ROWS: usize = 2;

/// `acc[c] += a * row[c]` over one block, fused multiply-adds in registers.
#[inline(always)]
fn axpy_block<const W: usize>(acc: &mut [f32; W], a: f32, row: &[f32; W]) {
    for (y, &x) in acc.iter_mut().zip(row) {
        *y = a.mul_add(x, *y);
    }
}

/// One evaluation's inputs: q, k, v and the mask (with its broadcast strides) as slices.
#[derive(Debug, Clone, Copy)]
struct Problem<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: Option<(&'a [f32], [usize; 4])>,
    scale: f32,
    dims: Dims,
}

/// Scores of R query rows `qs` against the W key columns `c0..c0 + W` of `kt` ([D, s_pad]):
/// `scores[r][c0 + c] = sum over dd of q[r][dd] * kt[dd][c0 + c]`, in dd order.
#[inline(always)]
fn score_block<const R: usize, const W: usize>(
    qs: &[&[f32]; R],
    kt: &[f32],
    s_pad: usize,
    c0: usize,
    scores: &mut [f32],
) {
    let mut acc = [[0f32; W]; R];
    for dd in 0..qs[0].len() {
        let row = kt[dd * s_pad + c0..][..W].try_into().unwrap();
        for (acc, q) in acc.iter_mut().zip(qs) {
            axpy_block(acc, q[dd], row);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        scores[r * s_pad + c0..][..W].copy_from_slice(acc);
    }
}

/// Output columns `c0..c0 + W` of R query rows: `out[r][c] = sum over j of p[r][j] *
/// v[j][c]`, in j order (`probs` holds the R rows `s_pad` apart).
#[inline(always)]
fn weigh_block<'v, const R: usize, const W: usize>(
    probs: &[f32],
    s_pad: usize,
    v_row: impl Fn(usize) -> &'v [f32],
    s: usize,
    c0: usize,
    outs: &mut [&mut [f32]; R],
) {
    let mut acc = [[0f32; W]; R];
    for j in 0..s {
        let row = v_row(j)[c0..][..W].try_into().unwrap();
        for (r, acc) in acc.iter_mut().enumerate() {
            axpy_block(acc, probs[r * s_pad + j], row);
        }
    }
    for (out, acc) in outs.iter_mut().zip(&acc) {
        out[c0..c0 + W].copy_from_slice(acc);
    }
}

/// A mask value at or below this excludes its key: the key's score is then so far below
/// the row's largest that the softmax's exp gives exactly 0 (it returns 0 below -87.3).
/// The text tower's causal mask uses `f32::MIN` (Hugging Face's export) or `-inf`
/// (OpenAI's).
const EXCLUDED: f32 = -1e30;

/// One past the last key that query row `i` of head `h` in batch `b` can weigh: the last
/// key whose mask value is above [`EXCLUDED`] (or not a number). All `s` keys without a
/// mask, or when the mask excludes every key (the graph's softmax then weighs them all).
///
/// Skipping the keys after it gives the same result as computing them, not just a close
/// one: each of their scores is `dot * scale + m` with `m <= -1e30`, at least 1e22 below
/// the row's largest (a key it does not exclude) for any dot product below about 1e21, so
/// its exp is exactly 0 ([`softmax_row`]); the row's maximum and sum do not change, its
/// weight is 0, and a fused multiply-add of 0 leaves the weighted sum as it was.
fn live_keys(mask: Option<(&[f32], [usize; 4])>, bh: (usize, usize), i: usize, s: usize) -> usize {
    let Some(m) = mask_row(mask, bh, i) else {
        return s;
    };
    (0..s)
        .rev()
        .find(|&j| {
            let v = m(j);
            v > EXCLUDED || v.is_nan()
        })
        .map_or(s, |j| j + 1)
}

/// The mask's values for query row `i` of head `h` in batch `b`, by key index (`None`
/// without a mask).
#[inline(always)]
fn mask_row<'m>(
    mask: Option<(&'m [f32], [usize; 4])>,
    (b, h): (usize, usize),
    i: usize,
) -> Option<impl Fn(usize) -> f32 + 'm> {
    let (m, [sb, sh, si, sj]) = mask?;
    let base = b * sb + h * sh + i * si;
    Some(move |j: usize| m[base + j * sj])
}

/// Query rows `i0..i0 + R` of the head `h` of batch `b`, into `outs` (their [Dv] rows);
/// `kt` is the head's k as [D, s_pad], `scores` room for R rows of `s_pad`.
#[inline(always)]
fn query_rows<const R: usize>(
    problem: &Problem,
    (b, h): (usize, usize),
    i0: usize,
    kt: &[f32],
    scores: &mut [f32],
    outs: &mut [&mut [f32]; R],
) {
    let Problem {
        q,
        v,
        mask,
        scale,
        dims,
        ..
    } = *problem;
    let Dims {
        t, s, heads, d, dv, ..
    } = dims;
    let s_pad = s.div_ceil(LANES) * LANES;
    // Keys after the last one any of the R rows can weigh are skipped (the text tower's
    // causal mask: about half of its keys); see [`live_keys`].
    let live = (0..R)
        .map(|r| live_keys(mask, (b, h), i0 + r, s))
        .max()
        .unwrap_or(s);
    let live_pad = live.div_ceil(LANES) * LANES;
    let qs: [&[f32]; R] = std::array::from_fn(|r| &q[((b * t + i0 + r) * heads + h) * d..][..d]);
    let mut c0 = 0;
    while c0 + BLOCK <= live_pad {
        score_block::<R, BLOCK>(&qs, kt, s_pad, c0, scores);
        c0 += BLOCK;
    }
    // The last 8, 16 or 24 columns as one block (more chains than one register at a time).
    match live_pad - c0 {
        0 => {}
        8 => score_block::<R, LANES>(&qs, kt, s_pad, c0, scores),
        16 => score_block::<R, { 2 * LANES }>(&qs, kt, s_pad, c0, scores),
        _ => score_block::<R, { 3 * LANES }>(&qs, kt, s_pad, c0, scores),
    }
    for r in 0..R {
        let row = &mut scores[r * s_pad..][..live];
        match mask_row(mask, (b, h), i0 + r) {
            Some(m) => {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *x * scale + m(j);
                }
            }
            None => row.iter_mut().for_each(|x| *x *= scale),
        }
        softmax_row(row);
    }
    let v_row = move |j: usize| &v[((b * s + j) * heads + h) * dv..][..dv];
    let mut c0 = 0;
    while c0 + BLOCK <= dv {
        weigh_block::<R, BLOCK>(scores, s_pad, v_row, live, c0, outs);
        c0 += BLOCK;
    }
    match (dv - c0) / LANES {
        0 => {}
        1 => weigh_block::<R, LANES>(scores, s_pad, v_row, live, c0, outs),
        2 => weigh_block::<R, { 2 * LANES }>(scores, s_pad, v_row, live, c0, outs),
        _ => weigh_block::<R, { 3 * LANES }>(scores, s_pad, v_row, live, c0, outs),
    }
    c0 += (dv - c0) / LANES * LANES;
    for (r, out) in outs.iter_mut().enumerate() {
        let p = &scores[r * s_pad..][..live];
        for (c, y) in out.iter_mut().enumerate().skip(c0) {
            *y = p
                .iter()
                .enumerate()
                .fold(0f32, |acc, (j, &p)| p.mul_add(v_row(j)[c], acc));
        }
    }
}

/// The head `h` of batch `b`: writes its [T, Dv] output rows to `out`.
#[inline(always)]
fn head_body(problem: Problem, (b, h): (usize, usize), out: &mut [f32]) {
    let Dims {
        t, s, heads, d, dv, ..
    } = problem.dims;
    // k of this head as [D, S] (S padded with zeros to whole registers), so that each
    // query's scores are sums of its rows, a block of columns at a time in registers.
    let s_pad = s.div_ceil(LANES) * LANES;
    let mut kt = vec![0f32; d * s_pad];
    for j in 0..s {
        let row = &problem.k[((b * s + j) * heads + h) * d..][..d];
        for (dd, &x) in row.iter().enumerate() {
            kt[dd * s_pad + j] = x;
        }
    }
    let mut scores = vec![0f32; ROWS * s_pad];
    let mut rows = out[..t * dv].chunks_exact_mut(dv);
    let mut i = 0;
    while i + ROWS <= t {
        let mut outs: [&mut [f32]; ROWS] = std::array::from_fn(|_| rows.next().expect("t rows"));
        query_rows::<ROWS>(&problem, (b, h), i, &kt, &mut scores, &mut outs);
        i += ROWS;
    }
    for row in rows {
        query_rows::<1>(&problem, (b, h), i, &kt, &mut scores, &mut [row]);
        i += 1;
    }
}

multiversion!(head(problem: Problem, bh: (usize, usize), out: &mut [f32]) -> () {
    head_body(problem, bh, out)
});

/// The whole op on plain slices: every (batch, head) pair is one task on the engine's
/// thread pool when it has more than one thread.
fn attention(problem: Problem, out: &mut [f32]) {
    let Dims {
        batch,
        t,
        heads,
        dv,
        ..
    } = problem.dims;
    let pairs = batch * heads;
    let run = |pair: usize| {
        let mut rows = vec![0f32; t * dv];
        head(problem, (pair / heads, pair % heads), &mut rows);
        rows
    };
    let pool = engine_pool().filter(|pool| pool.current_num_threads() > 1 && pairs > 1);
    let heads_out: Vec<Vec<f32>> = match pool {
        Some(pool) => pool.install(|| {
            use rayon::prelude::*;
            (0..pairs).into_par_iter().map(run).collect()
        }),
        None => (0..pairs).map(run).collect(),
    };
    // [B, H, T, Dv] -> [B, T, H, Dv].
    for (pair, rows) in heads_out.iter().enumerate() {
        let (b, h) = (pair / heads, pair % heads);
        for (i, row) in rows.chunks_exact(dv).enumerate() {
            out[((b * t + i) * heads + h) * dv..][..dv].copy_from_slice(row);
        }
    }
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // A batch of 1 among q, k and v broadcasts to the others' (MatMul semantics).
        if inputs[..3].iter().all(|t| t.rank() == 4) {
            let batch = inputs[..3].iter().map(|t| t.shape()[0]).max().unwrap_or(1);
            for input in inputs[..3].iter_mut() {
                if input.shape()[0] == 1 && batch > 1 {
                    *input = repeat_batch(input, batch)?;
                }
            }
        }
        let (q, k, v) = (&inputs[0], &inputs[1], &inputs[2]);
        let (&[batch, t, heads, d], &[kb, s, kh, kd], &[vb, vs, vh, dv]) =
            (q.shape(), k.shape(), v.shape())
        else {
            bail!(
                "Attention: q, k, v of shapes {:?}, {:?}, {:?}: expected rank 4",
                q.shape(),
                k.shape(),
                v.shape()
            );
        };
        ensure!(
            (kb, kh, kd) == (batch, heads, d) && (vb, vs, vh) == (batch, s, heads),
            "Attention: q, k, v of shapes {:?}, {:?}, {:?} do not fit [B, T, H, D], \
             [B, S, H, D], [B, S, H, Dv]",
            q.shape(),
            k.shape(),
            v.shape()
        );
        let dims = Dims {
            batch,
            t,
            s,
            heads,
            d,
            dv,
        };
        let (q, k, v) = (
            q.try_as_plain_ram()?,
            k.try_as_plain_ram()?,
            v.try_as_plain_ram()?,
        );
        let mask_ram = inputs.get(3).map(|m| m.try_as_plain_ram()).transpose()?;
        let mask = match (&mask_ram, inputs.get(3)) {
            (Some(ram), Some(m)) => Some((ram.as_slice::<f32>()?, mask_strides(m.shape(), dims)?)),
            _ => None,
        };
        let mut out = Tensor::zero::<f32>(&[batch, t, heads, dv])?;
        if s > 0 {
            let mut ov = out.try_as_plain_ram_mut()?;
            let problem = Problem {
                q: q.as_slice::<f32>()?,
                k: k.as_slice::<f32>()?,
                v: v.as_slice::<f32>()?,
                mask,
                scale: self.scale,
                dims,
            };
            attention(problem, ov.as_slice_mut::<f32>()?);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs.len() >= 3 && inputs[..3].iter().all(|f| f.rank() == 4),
            "Attention: q, k, v must have rank 4"
        );
        let q = &inputs[0].shape;
        Ok(tvec!(f32::fact([
            broadcast_batch(&q[0], &inputs[1].shape[0]),
            q[1].clone(),
            q[2].clone(),
            inputs[2].shape[3].clone(),
        ])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 reference of the unfused graph: per batch and head, scores = q.k * scale + mask,
    /// softmax over keys, weighted sum of v.
    fn naive(problem: Problem) -> Vec<f64> {
        let Problem {
            q,
            k,
            v,
            mask,
            scale,
            dims: dm,
        } = problem;
        let mut out = vec![0f64; dm.batch * dm.t * dm.heads * dm.dv];
        for b in 0..dm.batch {
            for h in 0..dm.heads {
                for i in 0..dm.t {
                    let qi = &q[((b * dm.t + i) * dm.heads + h) * dm.d..][..dm.d];
                    let scores: Vec<f64> = (0..dm.s)
                        .map(|j| {
                            let kj = &k[((b * dm.s + j) * dm.heads + h) * dm.d..][..dm.d];
                            let dot: f64 =
                                qi.iter().zip(kj).map(|(&a, &c)| a as f64 * c as f64).sum();
                            let m = mask.map_or(0.0, |(m, [sb, sh, si, sj])| {
                                m[b * sb + h * sh + i * si + j * sj] as f64
                            });
                            dot * scale as f64 + m
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for j in 0..dm.s {
                        let vj = &v[((b * dm.s + j) * dm.heads + h) * dm.dv..][..dm.dv];
                        let o = &mut out[((b * dm.t + i) * dm.heads + h) * dm.dv..][..dm.dv];
                        for (y, &x) in o.iter_mut().zip(vj) {
                            *y += e[j] / sum * x as f64;
                        }
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 + seed * 31) % 2003) as f32 / 2003.0 * 4.0 - 2.0)
            .collect()
    }

    #[test]
    fn attention_matches_an_f64_reference_on_one_and_two_threads() {
        let two = tract_linalg::multithread::Executor::multithread(2);
        // ViT-B/32's layer, the text tower's [T, T] causal mask, keys of another length than
        // the queries, per-batch and per-head masks, value widths of a whole register block
        // plus a tail and of a tail only; key lengths whose last columns make blocks of 8,
        // 16 and 24, value widths with blocks of 8, 16 and 24 after the 32s and scalar columns
        // after those, odd query counts (the last row alone).
        let dims = |batch, t, s, heads, d, dv| Dims {
            batch,
            t,
            s,
            heads,
            d,
            dv,
        };
        let cases: [(Dims, Option<&[usize]>); 7] = [
            (dims(1, 50, 50, 12, 64, 64), None),
            (dims(2, 7, 7, 2, 16, 16), Some(&[7, 7])),
            (dims(2, 5, 9, 3, 7, 11), Some(&[2, 1, 1, 9])),
            (dims(1, 3, 4, 2, 5, 5), Some(&[1, 2, 3, 4])),
            (dims(1, 3, 37, 2, 9, 40), Some(&[3, 37])),
            (dims(3, 1, 1, 1, 1, 1), None),
            (dims(1, 5, 50, 2, 8, 57), Some(&[5, 50])),
        ];
        for (dims, mask_shape) in cases {
            let Dims {
                batch,
                t,
                s,
                heads,
                d,
                dv,
            } = dims;
            let q = values(batch * t * heads * d, 1);
            let k = values(batch * s * heads * d, 2);
            let v = values(batch * s * heads * dv, 3);
            // Every third entry masked out (as large negative as the text tower's), small
            // values elsewhere.
            let mask_values: Option<Vec<f32>> = mask_shape.map(|shape| {
                let n: usize = shape.iter().product();
                (0..n)
                    .map(|i| {
                        if i % 3 == 1 {
                            -3.4e38
                        } else {
                            (i % 5) as f32 * 0.1
                        }
                    })
                    .collect()
            });
            let mask = match (&mask_values, mask_shape) {
                (Some(m), Some(shape)) => Some((&m[..], mask_strides(shape, dims).unwrap())),
                _ => None,
            };
            let problem = Problem {
                q: &q,
                k: &k,
                v: &v,
                mask,
                scale: 0.125,
                dims,
            };
            let want = naive(problem);
            let mut one = vec![f32::NAN; want.len()];
            attention(problem, &mut one);
            let mut pair = vec![f32::NAN; want.len()];
            tract_linalg::multithread::multithread_tract_scope(two.clone(), || {
                attention(problem, &mut pair)
            });
            assert_eq!(one, pair, "{dims:?}: thread count changed the result");
            // f32 rounding: 64-term dot products of values up to 2 carry ~1e-6 of absolute
            // error into the scores, the softmax and the weighted sum keep it that size.
            for (got, want) in one.iter().zip(&want) {
                assert!(
                    (*got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{dims:?} mask {mask_shape:?}: {got} vs {want}"
                );
            }
        }
    }

    /// Keys a causal mask excludes (`f32::MIN` as in the text tower, `-inf`, -1e30) are
    /// skipped, with the same result as computing them: bit for bit the same as a mask of
    /// -1e29 there, which is not skipped and gives the same zero weights. A NaN in the last
    /// key shows that the skip happens: the rows before the last pair never read it.
    #[test]
    fn keys_a_causal_mask_excludes_are_skipped_with_the_same_result() {
        for (t, heads, d, dv) in [(77, 2, 64, 64), (9, 1, 5, 11), (8, 3, 16, 24)] {
            let dims = Dims {
                batch: 2,
                t,
                s: t,
                heads,
                d,
                dv,
            };
            let q = values(2 * t * heads * d, 4);
            let k = values(2 * t * heads * d, 5);
            let v = values(2 * t * heads * dv, 6);
            let causal = |fill: f32| -> Vec<f32> {
                (0..t * t)
                    .map(|ij| if ij % t > ij / t { fill } else { 0.0 })
                    .collect()
            };
            let strides = mask_strides(&[t, t], dims).unwrap();
            let run = |k: &[f32], mask: &[f32]| {
                let problem = Problem {
                    q: &q,
                    k,
                    v: &v,
                    mask: Some((mask, strides)),
                    scale: 0.125,
                    dims,
                };
                let mut out = vec![f32::NAN; 2 * t * heads * dv];
                attention(problem, &mut out);
                out
            };
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            let computed = run(&k, &causal(-1e29));
            assert!(computed.iter().all(|x| x.is_finite()));
            for fill in [f32::MIN, f32::NEG_INFINITY, EXCLUDED] {
                assert_eq!(
                    bits(run(&k, &causal(fill))),
                    bits(computed.clone()),
                    "t {t}, mask {fill}"
                );
            }
            // A NaN in the last key of batch 0, head 0: only the last two query rows (the
            // last pair computes up to the later row's keys) may read it.
            let mut k_nan = k.clone();
            k_nan[(t - 1) * heads * d] = f32::NAN;
            let out = run(&k_nan, &causal(f32::MIN));
            for i in 0..t {
                let row = &out[i * heads * dv..][..dv];
                if i + 2 < t {
                    assert!(
                        row.iter().all(|x| x.is_finite()),
                        "t {t}: row {i} read key {}",
                        t - 1
                    );
                }
            }
            assert!(
                out[(t - 1) * heads * dv].is_nan(),
                "t {t}: the last row weighs every key"
            );
        }
    }

    #[test]
    fn masks_must_broadcast() {
        let dims = Dims {
            batch: 2,
            t: 3,
            s: 4,
            heads: 5,
            d: 1,
            dv: 1,
        };
        assert_eq!(mask_strides(&[3, 4], dims).unwrap(), [0, 0, 4, 1]);
        assert_eq!(mask_strides(&[2, 1, 1, 4], dims).unwrap(), [4, 0, 0, 1]);
        assert_eq!(mask_strides(&[], dims).unwrap(), [0, 0, 0, 0]);
        for bad in [&[4, 3][..], &[3, 3], &[1, 2, 2, 3, 4]] {
            assert!(mask_strides(bad, dims).is_err(), "{bad:?}");
        }
    }

    /// A q of batch 1 (SigLIP's pooling probe when tract's own MatMul has taken the Expand
    /// of the probe in: the tract fp32 path, e.g. every aarch64 CPU) meets k and v of batch
    /// 3: the result is the one of q repeated 3 times, as the graph's MatMul broadcasts it.
    #[test]
    fn a_query_of_batch_one_broadcasts_to_the_keys_batch() -> TractResult<()> {
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
        };
        let run = |q_batch: usize| -> TractResult<Tensor> {
            let mut model = TypedModel::default();
            let q = model.add_source("q", f32::fact([q_batch, 2, 2, 4]))?;
            let k = model.add_source("k", f32::fact([3, 5, 2, 4]))?;
            let v = model.add_source("v", f32::fact([3, 5, 2, 4]))?;
            let out = model.wire_node("attention", Attention { scale: 0.5 }, &[q, k, v])?;
            model.select_output_outlets(&out)?;
            assert_eq!(
                model.outlet_fact(out[0])?.shape.to_tvec(),
                tvec![3.into(), 2.into(), 2.into(), 4.into()]
            );
            let one = values(2 * 2 * 4, 1.0);
            let q: Vec<f32> = (0..q_batch).flat_map(|_| one.iter().copied()).collect();
            let input = |shape: &[usize], data: Vec<f32>| -> TractResult<TValue> {
                Ok(tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data)?
                    .into_tensor()
                    .into_tvalue())
            };
            let mut outputs = model.into_runnable()?.run(tvec![
                input(&[q_batch, 2, 2, 4], q)?,
                input(&[3, 5, 2, 4], values(3 * 5 * 2 * 4, 2.0))?,
                input(&[3, 5, 2, 4], values(3 * 5 * 2 * 4, 3.0))?,
            ])?;
            Ok(outputs.remove(0).into_tensor())
        };
        assert_eq!(run(1)?, run(3)?);
        Ok(())
    }

    /// Both towers of the tiny fixture: every layer's attention is fused (the text tower's
    /// with its causal mask), and the embeddings equal tract's unfused graph within 1e-6
    /// (measured: 3.6e-7 image fp32, 0 image int8, 5.7e-7 text, on 1 and 2 threads).
    #[test]
    fn fused_towers_equal_the_unfused_graphs() {
        crate::fused::tests::fused_towers_equal_the_unfused_graphs(
            |onnx, proto| {
                register(onnx);
                fuse(proto)
            },
            [2, 2, 2],
        );
    }
}
