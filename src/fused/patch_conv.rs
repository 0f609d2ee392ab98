//! The image tower's patch embedding (`Conv` with kernel = stride, no padding, no
//! dilation, one group: ViT's non-overlapping patches) as one fp32 product on the engine's
//! own kernel ([`crate::kernels::f32_gemm`]).
//!
//! tract lowers that Conv to an im2col pass and its own matrix product, which on a 2-vCPU
//! AMD EPYC (Zen 3) took 8 ms of a 90 ms int8 ViT-B/32 pass (about 30 GFLOP/s), the largest
//! cost after the integer products. Here the weight [O, C, kh, kw] is packed once at load as
//! the [C·kh·kw, O] right-hand side; each evaluation copies every patch into one row
//! (C, then kernel rows, then kernel columns: the weight's own order), runs one
//! [patches, C·kh·kw] x [C·kh·kw, O] product with the bias in its output stage, and writes
//! the [N, O, H/kh, W/kw] tensor the Conv would have made. Every output is the Conv's sum
//! in the weight's order with fused multiply-adds, so results differ from tract's by
//! rounding only.
//!
//! A 1x1 kernel (stride 1: the pointwise convolutions of convolution towers such as
//! MobileCLIP's FastViT, 93% of MobileCLIP2-S0's convolution work) skips both copies: each
//! image's [C, H·W] planes are packed as the right-hand side of `W x`, whose [O, H·W]
//! product is the output's planes. On MobileCLIP2-S0 the patch path (transposing every
//! activation in and out) took 110 of 180 ms of an fp32 pass (`clip_bench --profile`, a
//! 2-vCPU Xeon).
//!
//! Where it runs: with the fp32 Linear layers ([`super::linear`]), on CPUs with AVX2 and FMA
//! unless `CLIP_PERCEPTION_F32_KERNEL=tract`, in the fp32 and the int8 image graphs (the
//! int8 graph keeps this Conv in fp32). Any other Conv is left as it is.

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::parallel::engine_pool;
use super::rewrite::{attr, fused_node, is_onnx, GraphIndex, Rewrite, ONNX_FLOAT};
use super::{constant_f32_vector, constant_input, Signature};
use crate::kernels::f32_gemm::{self, PackedF32};

const PATCH_CONV_OP: &str = "ClipPerceptionPatchConv";

/// Registers the fused op with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(PATCH_CONV_OP, parse_patch_conv);
}

fn parse_patch_conv(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let size = |name: &str| -> TractResult<usize> {
        let value = attr(node, name)
            .map(|a| a.f)
            .with_context(|| format!("{PATCH_CONV_OP} node without its {name}"))?;
        ensure!(
            value >= 1.0 && value.fract() == 0.0,
            "{PATCH_CONV_OP}: {name} {value}"
        );
        Ok(value as usize)
    };
    Ok((
        expand(PatchConvExpansion {
            kh: size("kh")?,
            kw: size("kw")?,
        }),
        vec![],
    ))
}

/// Whether the integer list attribute `name` is absent or equals `want`.
fn ints_absent_or(node: &NodeProto, name: &str, want: &[i64]) -> bool {
    attr(node, name).is_none_or(|a| a.ints == want)
}

/// The kernel size (kh, kw) when `node` is a patch-embedding Conv this module runs: f32
/// weight initializer [O, C, kh, kw], strides equal to the kernel, no padding, dilation 1,
/// one group, and a [O] f32 initializer bias if it has one.
fn patch_conv(g: &GraphIndex, node: &NodeProto) -> Option<(usize, usize)> {
    if node.op_type != "Conv" || !is_onnx(node) || !matches!(node.input.len(), 2 | 3) {
        return None;
    }
    if g.inits.contains_key(node.input[0].as_str()) {
        return None;
    }
    let weight = g.inits.get(node.input[1].as_str())?;
    if weight.data_type != ONNX_FLOAT as i32 || weight.dims.len() != 4 {
        return None;
    }
    let (o, kh, kw) = (weight.dims[0], weight.dims[2], weight.dims[3]);
    // f32 attributes carry the sizes: keep them exact.
    if kh < 1 || kw < 1 || kh > 1 << 20 || kw > 1 << 20 {
        return None;
    }
    let kernel = [kh, kw];
    let auto_pad_ok =
        attr(node, "auto_pad").is_none_or(|a| matches!(&a.s[..], b"NOTSET" | b"VALID"));
    let plain = ints_absent_or(node, "kernel_shape", &kernel)
        && attr(node, "strides").is_some_and(|a| a.ints == kernel)
        && ints_absent_or(node, "pads", &[0, 0, 0, 0])
        && ints_absent_or(node, "dilations", &[1, 1])
        && attr(node, "group").is_none_or(|a| a.i == 1)
        && auto_pad_ok;
    let bias_ok = node.input.get(2).is_none_or(|b| {
        g.inits
            .get(b.as_str())
            .is_some_and(|t| t.data_type == ONNX_FLOAT as i32 && t.dims == [o])
    });
    (plain && bias_ok).then_some((kh as usize, kw as usize))
}

/// Rewrites every patch-embedding Conv (see the module documentation) into one fused node;
/// returns how many.
pub fn fuse(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    for (ix, node) in g.nodes.iter().enumerate() {
        if let Some((kh, kw)) = patch_conv(&g, node) {
            let fused = fused_node(
                node,
                PATCH_CONV_OP,
                node.input.clone(),
                node.output.clone(),
                &[("kh", kh as f32), ("kw", kw as f32)],
            );
            rewrite.replace(ix, fused);
        }
    }
    rewrite
        .apply(graph)
        .get(PATCH_CONV_OP)
        .copied()
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct PatchConvExpansion {
    kh: usize,
    kw: usize,
}

impl Expansion for PatchConvExpansion {
    fn name(&self) -> StaticName {
        PATCH_CONV_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        Signature::F32_WEIGHT_OP.rules(s, inputs, outputs, PATCH_CONV_OP)?;
        s.equals(&inputs[0].rank, 4)?;
        s.equals(&inputs[1].rank, 4)?;
        s.equals(&outputs[0].rank, 4)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[1].shape[0])?;
        let (kh, kw) = (self.kh, self.kw);
        s.given(&inputs[0].shape[2], move |s, h| {
            s.equals(&outputs[0].shape[2], h / kh)
        })?;
        s.given(&inputs[0].shape[3], move |s, w| {
            s.equals(&outputs[0].shape[3], w / kw)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let names = (prefix, PATCH_CONV_OP);
        let weight = constant_input(model, inputs, 1, names)?;
        let &[o, c, kh, kw] = weight.shape() else {
            bail!("{prefix}: weight of shape {:?}", weight.shape());
        };
        ensure!(
            (kh, kw) == (self.kh, self.kw),
            "{prefix}: weight of shape {:?} for a {}x{} kernel",
            weight.shape(),
            self.kh,
            self.kw
        );
        let k = c * kh * kw;
        // [O, K] row-major -> the [K, O] right-hand side.
        let w = weight.try_as_plain_ram()?;
        let w = w.as_slice::<f32>()?;
        let mut rhs = vec![0f32; k * o];
        for (oc, row) in w.chunks_exact(k.max(1)).enumerate().take(o) {
            for (kk, &v) in row.iter().enumerate() {
                rhs[kk * o + oc] = v;
            }
        }
        let bias = match inputs.get(2) {
            Some(_) => Some(constant_f32_vector(model, inputs, 2, o, names)?),
            None => None,
        };
        let op = PatchConv {
            packed: Arc::new(PackedF32::pack(&rhs, k, o)),
            pointwise: ((kh, kw) == (1, 1)).then(|| Arc::from(w)),
            bias,
            channels: c,
            kh,
            kw,
        };
        model.wire_node(prefix, op, &inputs[..1])
    }
}

/// `Conv(x, W (, bias))` with kernel = stride [kh, kw], on the weight packed at load.
#[derive(Debug, Clone)]
pub struct PatchConv {
    /// The weight as the [C·kh·kw, O] right-hand side.
    packed: Arc<PackedF32>,
    /// A 1x1 kernel's weight as it is, [O, C] row-major: the left-hand side of
    /// `out[n] = W x[n]` on each image's [C, H·W] planes ([`PatchConv::run_pointwise`]).
    pointwise: Option<Arc<[f32]>>,
    bias: Option<Arc<[f32]>>,
    channels: usize,
    kh: usize,
    kw: usize,
}

impl PartialEq for PatchConv {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed) && self.bias == other.bias
    }
}

impl Eq for PatchConv {}

impl Op for PatchConv {
    fn name(&self) -> StaticName {
        "PatchConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "f32 {} -> {} channels, {}x{} patches{}",
            self.channels,
            self.packed.n(),
            self.kh,
            self.kw,
            if self.bias.is_some() { ", bias" } else { "" }
        )])
    }

    op_as_typed_op!();
}

/// Copies the patches of `x` ([N, C, H, W]) into rows of `patches` ([N·gh·gw, C·kh·kw]).
fn im2col(x: &[f32], [n, c, h, w]: [usize; 4], (kh, kw): (usize, usize), patches: &mut [f32]) {
    let (gh, gw) = (h / kh, w / kw);
    let k = c * kh * kw;
    for (row, dst) in patches.chunks_exact_mut(k).enumerate().take(n * gh * gw) {
        let (b, py, px) = (row / (gh * gw), row / gw % gh, row % gw);
        for (ch, dst) in dst.chunks_exact_mut(kh * kw).enumerate() {
            let plane = &x[(b * c + ch) * h * w..][..h * w];
            for (ky, dst) in dst.chunks_exact_mut(kw).enumerate() {
                dst.copy_from_slice(&plane[(py * kh + ky) * w + px * kw..][..kw]);
            }
        }
    }
}

impl EvalOp for PatchConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(self.run(&inputs[0])?.into_tvalue()))
    }
}

impl PatchConv {
    /// The Conv of `x` ([N, C, H, W]) on the engine's thread pool, if any.
    fn run(&self, x: &Tensor) -> TractResult<Tensor> {
        let &[n, c, h, w] = x.shape() else {
            bail!("PatchConv: input of shape {:?}, expected rank 4", x.shape());
        };
        ensure!(
            c == self.channels,
            "PatchConv: input of shape {:?}, expected {} channels",
            x.shape(),
            self.channels
        );
        if let Some(weight) = &self.pointwise {
            return self.run_pointwise(weight, x, [n, c, h, w]);
        }
        let (o, k) = (self.packed.n(), self.packed.k());
        let (gh, gw) = (h / self.kh, w / self.kw);
        let rows = n * gh * gw;
        let mut patches = vec![0f32; rows * k];
        im2col(
            x.try_as_plain_ram()?.as_slice::<f32>()?,
            [n, c, h, w],
            (self.kh, self.kw),
            &mut patches,
        );
        let mut product = vec![0f32; rows * o];
        let pool = engine_pool();
        f32_gemm::gemm(
            &patches,
            rows,
            &self.packed,
            f32_gemm::Epilogue::bias(self.bias.as_deref()),
            &mut product,
            pool.as_deref(),
        );
        // [N, gh·gw, O] -> [N, O, gh, gw].
        let mut out = Tensor::zero::<f32>(&[n, o, gh, gw])?;
        {
            let mut ov = out.try_as_plain_ram_mut()?;
            let out = ov.as_slice_mut::<f32>()?;
            let grid = gh * gw;
            for b in 0..n {
                let src = &product[b * grid * o..][..grid * o];
                let dst = &mut out[b * o * grid..][..o * grid];
                for (p, row) in src.chunks_exact(o).enumerate() {
                    for (oc, &v) in row.iter().enumerate() {
                        dst[oc * grid + p] = v;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl PatchConv {
    /// A 1x1 Conv as `out[b] = W x[b]` per image: each image's [C, H·W] planes are the
    /// packed right-hand side, so neither the input nor the output is transposed (the
    /// patch path copies every pixel into a row and the product back into planes), and
    /// the bias is added to each output plane afterwards. Every output is the same sum
    /// over the channels in channel order as the patch path's, plus the bias.
    fn run_pointwise(
        &self,
        weight: &[f32],
        x: &Tensor,
        [n, c, h, w]: [usize; 4],
    ) -> TractResult<Tensor> {
        let o = self.packed.n();
        let grid = h * w;
        let input = x.try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        let mut out = Tensor::zero::<f32>(&[n, o, h, w])?;
        let pool = engine_pool();
        {
            let mut ov = out.try_as_plain_ram_mut()?;
            let out = ov.as_slice_mut::<f32>()?;
            for b in 0..n {
                let planes = PackedF32::pack(&input[b * c * grid..][..c * grid], c, grid);
                let dst = &mut out[b * o * grid..][..o * grid];
                f32_gemm::gemm(
                    weight,
                    o,
                    &planes,
                    f32_gemm::Epilogue::default(),
                    dst,
                    pool.as_deref(),
                );
                if let Some(bias) = &self.bias {
                    for (plane, &v) in dst.chunks_exact_mut(grid.max(1)).zip(bias.iter()) {
                        plane.iter_mut().for_each(|y| *y += v);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl TypedOp for PatchConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 4,
            "PatchConv: input of rank {}",
            shape.rank()
        );
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            self.packed.n().to_dim(),
            shape[2].clone() / self.kh,
            shape[3].clone() / self.kw,
        ])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Conv written out: `out[b, o, y, x] = bias[o] + sum over (c, ky, kx)` in that
    /// order, in f64.
    fn naive(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        weight: &[f32],
        o: usize,
        (kh, kw): (usize, usize),
        bias: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f64>) {
        let (gh, gw) = (h / kh, w / kw);
        let mut out = vec![0f32; n * o * gh * gw];
        let mut magnitude = vec![0f64; out.len()];
        for b in 0..n {
            for oc in 0..o {
                for py in 0..gh {
                    for px in 0..gw {
                        let mut sum = bias.map_or(0.0, |v| v[oc] as f64);
                        let mut abs = sum.abs();
                        for ch in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let xv =
                                        x[((b * c + ch) * h + py * kh + ky) * w + px * kw + kx];
                                    let wv = weight[((oc * c + ch) * kh + ky) * kw + kx];
                                    sum += xv as f64 * wv as f64;
                                    abs += (xv as f64 * wv as f64).abs();
                                }
                            }
                        }
                        let at = ((b * o + oc) * gh + py) * gw + px;
                        out[at] = sum as f32;
                        magnitude[at] = abs;
                    }
                }
            }
        }
        (out, magnitude)
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0)
            .collect()
    }

    /// The op on odd shapes (image sides not multiples of the kernel: the Conv drops the
    /// remainder; 17 output channels, across the kernel's 16-column panels; with and without
    /// bias; 1 and 2 threads) against the Conv written out in f64: within 2 f32 epsilons
    /// times sqrt(terms) times the sum of |terms| (a sum's typical rounding, not its worst).
    #[test]
    fn equals_the_conv_written_out() {
        if !PackedF32::is_available() {
            eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
            return;
        }
        let two = tract_linalg::multithread::Executor::multithread(2);
        for (dims, o, kernel) in [
            ([2, 3, 23, 17], 17, (4, 3)),
            ([1, 3, 64, 64], 33, (32, 32)),
            ([3, 1, 5, 7], 1, (1, 1)),
            ([2, 37, 9, 11], 70, (1, 1)),
        ] {
            let [n, c, h, w] = dims;
            let x = values(n * c * h * w, 1);
            let weight = values(o * c * kernel.0 * kernel.1, 2);
            let bias = values(o, 3);
            let mut rhs = vec![0f32; weight.len()];
            let k = c * kernel.0 * kernel.1;
            for oc in 0..o {
                for kk in 0..k {
                    rhs[kk * o + oc] = weight[oc * k + kk];
                }
            }
            for with_bias in [false, true] {
                let op = PatchConv {
                    packed: Arc::new(PackedF32::pack(&rhs, k, o)),
                    pointwise: (kernel == (1, 1)).then(|| weight.clone().into()),
                    bias: with_bias.then(|| bias.clone().into()),
                    channels: c,
                    kh: kernel.0,
                    kw: kernel.1,
                };
                let (want, magnitude) =
                    naive(&x, dims, &weight, o, kernel, with_bias.then_some(&bias[..]));
                let tol = |i: usize| 2.0 * f32::EPSILON as f64 * (k as f64).sqrt() * magnitude[i];
                let input = Tensor::from_shape(&dims, &x).unwrap();
                let run = || op.run(&input).unwrap();
                for threads in [1, 2] {
                    let out = if threads > 1 {
                        tract_linalg::multithread::multithread_tract_scope(two.clone(), run)
                    } else {
                        run()
                    };
                    let got = out.to_plain_array_view::<f32>().unwrap();
                    assert_eq!(got.shape(), &[n, o, h / kernel.0, w / kernel.1]);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            ((g - w).abs() as f64) <= tol(i),
                            "{dims:?} o={o} {kernel:?} bias={with_bias} threads={threads}: \
                             output {i}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The tiny fixture's towers: the fp32 and int8 image graphs' patch embedding is fused
    /// (the text graph has no Conv), and the embeddings equal tract's unfused graphs within
    /// 1e-6.
    #[test]
    fn fused_towers_equal_the_unfused_graphs() {
        if !PackedF32::is_available() {
            eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
            return;
        }
        crate::fused::tests::fused_towers_equal_the_unfused_graphs(
            |onnx, proto| {
                register(onnx);
                fuse(proto)
            },
            [1, 1, 0],
        );
    }
}
