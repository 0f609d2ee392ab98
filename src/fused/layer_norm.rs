//! Fused LayerNormalization over the last axis (CLIP's 25 image-tower and 25 text-tower
//! LayerNorms).
//!
//! tract decomposes an ONNX `LayerNormalization` into a sum reduction, a subtraction, a
//! second reduction, a multiplication and an addition: five passes over the activations,
//! each on the calling thread only. The engine rewrites the node (axis -1, float
//! computation, only its `Y` output used) into one op computing each row in two passes
//! (mean; then variance, normalisation, scale and bias), rows spread over the engine's thread
//! pool. The arithmetic is ONNX's definition, `(x - mean) / sqrt(var + eps) * scale + bias`
//! with the population variance; the sums are taken in 8 lanes, so results differ from
//! tract's by rounding only.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::parallel::rows_in_place;
use super::rewrite::{attr, fused_node, is_onnx, GraphIndex, Rewrite};
use super::Signature;

const LAYER_NORM_OP: &str = "ClipPerceptionLayerNorm";

/// Registers the fused op with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(LAYER_NORM_OP, parse_layer_norm);
}

fn parse_layer_norm(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let epsilon = attr(node, "epsilon")
        .map(|a| a.f)
        .context("layer norm node without its epsilon")?;
    Ok((expand(LayerNorm { epsilon }), vec![]))
}

/// Rewrites every ONNX `LayerNormalization` (opset 17) over the last axis (computed in float, `Y` the only
/// output read) into a [`LayerNorm`] node; returns how many.
pub fn fuse(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    for (ix, node) in g.nodes.iter().enumerate() {
        let last_axis = attr(node, "axis").is_none_or(|a| a.i == -1);
        let float = attr(node, "stash_type").is_none_or(|a| a.i == 1);
        let only_y = node.output.iter().skip(1).all(|o| o.is_empty());
        if node.op_type == "LayerNormalization"
            && is_onnx(node)
            && last_axis
            && float
            && only_y
            && (node.input.len() == 2 || node.input.len() == 3)
            && node.input.iter().all(|i| !i.is_empty())
        {
            // ONNX's default epsilon.
            let epsilon = attr(node, "epsilon").map_or(1e-5, |a| a.f);
            let output = vec![node.output[0].clone()];
            let fused = fused_node(
                node,
                LAYER_NORM_OP,
                node.input.clone(),
                output,
                &[("epsilon", epsilon)],
            );
            rewrite.replace(ix, fused);
        }
    }
    rewrite
        .apply(graph)
        .get(LAYER_NORM_OP)
        .copied()
        .unwrap_or(0)
}

/// LayerNormalization over the last axis: inputs x, scale [C] and optionally bias [C].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    pub epsilon: f32,
}

impl Eq for LayerNorm {}

impl Expansion for LayerNorm {
    fn name(&self) -> StaticName {
        LAYER_NORM_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        Signature::F32_WEIGHT_OP.rules(s, inputs, outputs, LAYER_NORM_OP)?;
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

impl Op for LayerNorm {
    fn name(&self) -> StaticName {
        "LayerNorm".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("epsilon {}", self.epsilon)])
    }

    op_as_typed_op!();
}

const LANES: usize = 8;

/// The sum of `xs` in [`LANES`] lanes (vectorised), then the lanes and the tail in order.
#[inline(always)]
fn lane_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// One row in place.
#[inline(always)]
fn layer_norm_row(row: &mut [f32], scale: &[f32], bias: Option<&[f32]>, epsilon: f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row) / n;
    let mut lanes = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += (x - mean) * (x - mean);
        }
    }
    let var = (lanes.iter().sum::<f32>() + tail) / n;
    let inv = 1.0 / (var + epsilon).sqrt();
    match bias {
        Some(bias) => {
            for ((x, &s), &b) in row.iter_mut().zip(scale).zip(bias) {
                *x = (*x - mean) * inv * s + b;
            }
        }
        None => {
            for (x, &s) in row.iter_mut().zip(scale) {
                *x = (*x - mean) * inv * s;
            }
        }
    }
}

multiversion!(layer_norm_rows(data: &mut [f32], scale: &[f32], bias: Option<&[f32]>, epsilon: f32) -> () {
    for row in data.chunks_exact_mut(scale.len()) {
        layer_norm_row(row, scale, bias, epsilon);
    }
});

/// Every row of `data` (rows of `scale.len()` values), spread over the engine's thread pool
/// where that pays; the same result on any number of threads.
fn layer_norm(data: &mut [f32], scale: &[f32], bias: Option<&[f32]>, epsilon: f32) {
    let len = scale.len();
    if len == 0 {
        return;
    }
    rows_in_place(data, len, |rows| {
        layer_norm_rows(rows, scale, bias, epsilon)
    });
}

impl EvalOp for LayerNorm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let bias = (inputs.len() == 3).then(|| inputs.remove(2));
        let scale = inputs.remove(1);
        // Taken, not cloned: computed in place, with no copy when no other op reads it.
        let mut x = inputs.remove(0).into_tensor();
        let len = *x.shape().last().context("LayerNorm: rank-0 input")?;
        let scale_ram = scale.try_as_plain_ram()?;
        let scale = scale_ram.as_slice::<f32>()?;
        let bias_ram = bias.as_ref().map(|b| b.try_as_plain_ram()).transpose()?;
        let bias = bias_ram.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
        ensure!(
            scale.len() == len && bias.is_none_or(|b| b.len() == len),
            "LayerNorm: input of shape {:?}, scale of {} and bias of {:?} values",
            x.shape(),
            scale.len(),
            bias.map(<[f32]>::len)
        );
        {
            let mut ram = x.try_as_plain_ram_mut()?;
            layer_norm(ram.as_slice_mut::<f32>()?, scale, bias, self.epsilon);
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for LayerNorm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_an_f64_reference_on_one_and_two_threads() {
        let two = tract_linalg::multithread::Executor::multithread(2);
        for (rows, len, with_bias) in [
            (50, 768, true),
            (7, 37, false),
            (3, 5, true),
            (40, 1024, true),
        ] {
            let x: Vec<f32> = (0..rows * len)
                .map(|i| ((i * 7919) % 2003) as f32 * 0.003 - 3.0 + (i / len) as f32)
                .collect();
            let scale: Vec<f32> = (0..len).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
            let bias: Vec<f32> = (0..len).map(|i| (i % 5) as f32 * 0.2 - 0.4).collect();
            let bias = with_bias.then_some(&bias[..]);
            let mut one = x.clone();
            layer_norm(&mut one, &scale, bias, 1e-5);
            let mut pair = x.clone();
            tract_linalg::multithread::multithread_tract_scope(two.clone(), || {
                layer_norm(&mut pair, &scale, bias, 1e-5)
            });
            assert_eq!(one, pair, "{rows}x{len}: thread count changed the result");
            for (r, (got, xr)) in one.chunks(len).zip(x.chunks(len)).enumerate() {
                let n = len as f64;
                let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                for (c, (&g, &v)) in got.iter().zip(xr).enumerate() {
                    let want = (v as f64 - mean) / (var + 1e-5).sqrt() * scale[c] as f64
                        + bias.map_or(0.0, |b| b[c] as f64);
                    // f32: the rows sit at offsets up to 49 with a spread near 1.7, so
                    // the mean's rounding (a few ulps of the offset) over the spread bounds
                    // the error of the normalised values.
                    let tol = 1e-6 + 4.0 * f32::EPSILON as f64 * mean.abs() / var.sqrt();
                    assert!(
                        (g as f64 - want).abs() <= tol,
                        "{rows}x{len} row {r} col {c}: {g} vs {want}"
                    );
                }
            }
        }
    }

    /// Both towers of the tiny fixture: every LayerNorm is fused, and the embeddings equal
    /// tract's unfused graph within 1e-6.
    #[test]
    fn fused_towers_equal_the_unfused_graphs() {
        // Image: 2 layers x 2, pre and post; text: 2 layers x 2 and the final one.
        crate::fused::tests::fused_towers_equal_the_unfused_graphs(
            |onnx, proto| {
                register(onnx);
                fuse(proto)
            },
            [6, 6, 5],
        );
    }
}
