//! Depthwise convolutions (`Conv` with one group per channel, weight [C, 1, kh, kw]: the
//! token mixers, positional encodings and downsampling of MobileCLIP's FastViT towers)
//! computed directly, plane by plane.
//!
//! tract lowers such a Conv to an im2col pass and a batched product: for a 7x7 kernel the
//! im2col buffer is 49 times the activation, and on MobileCLIP2-S0 `Im2col` took 42% of an
//! fp32 image pass (2-vCPU Xeon, `clip_bench --profile`) for a few percent of its
//! multiply-accumulates. Here each output plane is the sum over the kernel taps, in (ky, kx)
//! order, of one weight times a shifted input row, added along contiguous output rows (which
//! the compiler vectorises), with the bias first; taps that fall in the zero padding are
//! skipped. Results differ from tract's by rounding only. The planes (batch x channels) are
//! shared out over the engine's thread pool. Any other Conv is left as it is.

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::constant_input;
use super::parallel::engine_pool;
use super::rewrite::{attr, fused_node, is_onnx, GraphIndex, Rewrite, ONNX_FLOAT};
use super::Signature;

const DEPTHWISE_CONV_OP: &str = "ClipPerceptionDepthwiseConv";

/// Registers the fused op with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(DEPTHWISE_CONV_OP, parse);
}

/// Kernel, strides and padding of a depthwise Conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    kh: usize,
    kw: usize,
    sy: usize,
    sx: usize,
    /// Padding: top, left, bottom, right.
    pads: [usize; 4],
}

impl Geometry {
    /// Output side of an input side `size` along one axis.
    fn out_len(size: usize, k: usize, stride: usize, before: usize, after: usize) -> usize {
        let padded = size + before + after;
        if padded < k {
            0
        } else {
            (padded - k) / stride + 1
        }
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            Self::out_len(h, self.kh, self.sy, self.pads[0], self.pads[2]),
            Self::out_len(w, self.kw, self.sx, self.pads[1], self.pads[3]),
        )
    }

    /// The node attributes that carry it (f32, as the fused nodes' attributes are).
    fn attributes(&self) -> Vec<(&'static str, f32)> {
        let [pt, pl, pb, pr] = self.pads;
        [
            ("kh", self.kh),
            ("kw", self.kw),
            ("sy", self.sy),
            ("sx", self.sx),
            ("pt", pt),
            ("pl", pl),
            ("pb", pb),
            ("pr", pr),
        ]
        .into_iter()
        .map(|(k, v)| (k, v as f32))
        .collect()
    }
}

fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let size = |name: &str| -> TractResult<usize> {
        let value = attr(node, name)
            .map(|a| a.f)
            .with_context(|| format!("{DEPTHWISE_CONV_OP} node without its {name}"))?;
        ensure!(
            value >= 0.0 && value.fract() == 0.0 && value <= (1 << 20) as f32,
            "{DEPTHWISE_CONV_OP}: {name} {value}"
        );
        Ok(value as usize)
    };
    let geometry = Geometry {
        kh: size("kh")?,
        kw: size("kw")?,
        sy: size("sy")?,
        sx: size("sx")?,
        pads: [size("pt")?, size("pl")?, size("pb")?, size("pr")?],
    };
    ensure!(
        geometry.kh >= 1 && geometry.kw >= 1 && geometry.sy >= 1 && geometry.sx >= 1,
        "{DEPTHWISE_CONV_OP}: {geometry:?}"
    );
    Ok((expand(DepthwiseExpansion { geometry }), vec![]))
}

/// The geometry when `node` is a depthwise Conv this module runs: f32 weight initializer
/// [C, 1, kh, kw] with `group` = C, explicit (or no) padding, dilation 1, and a [C] f32
/// initializer bias if it has one.
fn depthwise_conv(g: &GraphIndex, node: &NodeProto) -> Option<Geometry> {
    if node.op_type != "Conv" || !is_onnx(node) || !matches!(node.input.len(), 2 | 3) {
        return None;
    }
    if g.inits.contains_key(node.input[0].as_str()) {
        return None;
    }
    let weight = g.inits.get(node.input[1].as_str())?;
    if weight.data_type != ONNX_FLOAT as i32 || weight.dims.len() != 4 || weight.dims[1] != 1 {
        return None;
    }
    let (c, kh, kw) = (weight.dims[0], weight.dims[2], weight.dims[3]);
    let small = |v: i64| (1..=1 << 12).contains(&v);
    if c < 2 || !small(kh) || !small(kw) {
        return None;
    }
    if attr(node, "group").is_none_or(|a| a.i != c) {
        return None;
    }
    if attr(node, "kernel_shape").is_some_and(|a| a.ints != [kh, kw])
        || attr(node, "dilations").is_some_and(|a| a.ints != [1, 1])
        || attr(node, "auto_pad").is_some_and(|a| !matches!(&a.s[..], b"NOTSET" | b""))
    {
        return None;
    }
    let strides = attr(node, "strides").map_or(vec![1, 1], |a| a.ints.clone());
    let pads = attr(node, "pads").map_or(vec![0; 4], |a| a.ints.clone());
    if strides.len() != 2 || !strides.iter().all(|&s| small(s)) {
        return None;
    }
    if pads.len() != 4 || !pads.iter().all(|&p| (0..=1 << 12).contains(&p)) {
        return None;
    }
    let bias_ok = node.input.get(2).is_none_or(|b| {
        g.inits
            .get(b.as_str())
            .is_some_and(|t| t.data_type == ONNX_FLOAT as i32 && t.dims == [c])
    });
    bias_ok.then_some(Geometry {
        kh: kh as usize,
        kw: kw as usize,
        sy: strides[0] as usize,
        sx: strides[1] as usize,
        pads: [
            pads[0] as usize,
            pads[1] as usize,
            pads[2] as usize,
            pads[3] as usize,
        ],
    })
}

/// Rewrites every depthwise Conv (see the module documentation) into one fused node;
/// returns how many.
pub fn fuse(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    for (ix, node) in g.nodes.iter().enumerate() {
        if let Some(geometry) = depthwise_conv(&g, node) {
            let fused = fused_node(
                node,
                DEPTHWISE_CONV_OP,
                node.input.clone(),
                node.output.clone(),
                &geometry.attributes(),
            );
            rewrite.replace(ix, fused);
        }
    }
    rewrite
        .apply(graph)
        .get(DEPTHWISE_CONV_OP)
        .copied()
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
struct DepthwiseExpansion {
    geometry: Geometry,
}

impl Expansion for DepthwiseExpansion {
    fn name(&self) -> StaticName {
        DEPTHWISE_CONV_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        Signature::F32_WEIGHT_OP.rules(s, inputs, outputs, DEPTHWISE_CONV_OP)?;
        s.equals(&inputs[0].rank, 4)?;
        s.equals(&outputs[0].rank, 4)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[0].shape[1])?;
        let geo = self.geometry;
        s.given(&inputs[0].shape[2], move |s, h| {
            let h = h.to_usize()?;
            s.equals(&outputs[0].shape[2], geo.out_hw(h, 1).0.to_dim())
        })?;
        s.given(&inputs[0].shape[3], move |s, w| {
            let w = w.to_usize()?;
            s.equals(&outputs[0].shape[3], geo.out_hw(1, w).1.to_dim())
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let names = (prefix, DEPTHWISE_CONV_OP);
        let weight = constant_input(model, inputs, 1, names)?;
        let &[c, one, kh, kw] = weight.shape() else {
            bail!("{prefix}: weight of shape {:?}", weight.shape());
        };
        ensure!(
            one == 1 && (kh, kw) == (self.geometry.kh, self.geometry.kw),
            "{prefix}: weight of shape {:?} for a depthwise {}x{} kernel",
            weight.shape(),
            self.geometry.kh,
            self.geometry.kw
        );
        let bias = match inputs.get(2) {
            Some(_) => Some(super::constant_f32_vector(model, inputs, 2, c, names)?),
            None => None,
        };
        let op = DepthwiseConv {
            weight: weight
                .try_as_plain_ram()?
                .as_slice::<f32>()?
                .to_vec()
                .into(),
            bias,
            channels: c,
            geometry: self.geometry,
        };
        model.wire_node(prefix, op, &inputs[..1])
    }
}

/// `Conv(x, W (, bias))` with one group per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv {
    /// [C, kh, kw].
    weight: Arc<[f32]>,
    bias: Option<Arc<[f32]>>,
    channels: usize,
    geometry: Geometry,
}

impl Eq for DepthwiseConv {}

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "DepthwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = &self.geometry;
        Ok(vec![format!(
            "f32 {} channels, {}x{} kernel, stride {}x{}, pads {:?}{}",
            self.channels,
            g.kh,
            g.kw,
            g.sy,
            g.sx,
            g.pads,
            if self.bias.is_some() { ", bias" } else { "" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        Ok(tvec!(self.run(&inputs[0])?.into_tvalue()))
    }
}

impl DepthwiseConv {
    /// One output plane `out` ([oh, ow]) of input plane `x` ([h, w]), channel `c`.
    fn plane(&self, x: &[f32], (h, w): (usize, usize), c: usize, out: &mut [f32], ow: usize) {
        let g = &self.geometry;
        let (kh, kw) = (g.kh, g.kw);
        let taps = &self.weight[c * kh * kw..][..kh * kw];
        out.fill(self.bias.as_ref().map_or(0.0, |b| b[c]));
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
        for (oy, row) in out.chunks_exact_mut(ow.max(1)).enumerate() {
            for ky in 0..kh {
                let iy = (oy * g.sy) as isize - pt + ky as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let src = &x[iy as usize * w..][..w];
                for kx in 0..kw {
                    let wv = taps[ky * kw + kx];
                    // Output columns whose input column ox*sx - pl + kx lies in [0, w).
                    let shift = kx as isize - pl;
                    let first = if shift >= 0 {
                        0
                    } else {
                        ((-shift) as usize).div_ceil(g.sx)
                    };
                    let end = if (w as isize) <= shift {
                        0
                    } else {
                        ((w as isize - shift) as usize).div_ceil(g.sx).min(ow)
                    };
                    if first >= end {
                        continue;
                    }
                    if g.sx == 1 {
                        let start = (first as isize + shift) as usize;
                        let src = &src[start..start + (end - first)];
                        for (o, &v) in row[first..end].iter_mut().zip(src) {
                            *o += wv * v;
                        }
                    } else {
                        for (ox, o) in row.iter_mut().enumerate().take(end).skip(first) {
                            *o += wv * src[ox * g.sx + kx - g.pads[1]];
                        }
                    }
                }
            }
        }
    }

    /// The Conv of `x` ([N, C, H, W]) on the engine's thread pool, if any.
    fn run(&self, x: &Tensor) -> TractResult<Tensor> {
        let &[n, c, h, w] = x.shape() else {
            bail!(
                "DepthwiseConv: input of shape {:?}, expected rank 4",
                x.shape()
            );
        };
        ensure!(
            c == self.channels,
            "DepthwiseConv: input of shape {:?}, expected {} channels",
            x.shape(),
            self.channels
        );
        let (oh, ow) = self.geometry.out_hw(h, w);
        let mut out = Tensor::zero::<f32>(&[n, c, oh, ow])?;
        let input = x.try_as_plain_ram()?;
        let input = input.as_slice::<f32>()?;
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let output = view.as_slice_mut::<f32>()?;
            let plane_out = (oh * ow).max(1);
            let run_plane = |(p, dst): (usize, &mut [f32])| {
                let src = &input[p * h * w..][..h * w];
                self.plane(src, (h, w), p % c, dst, ow);
            };
            match engine_pool() {
                Some(pool) if n * c > 1 => {
                    use rayon::prelude::*;
                    pool.install(|| {
                        output
                            .par_chunks_mut(plane_out)
                            .enumerate()
                            .for_each(run_plane)
                    });
                }
                _ => output.chunks_mut(plane_out).enumerate().for_each(run_plane),
            }
        }
        Ok(out)
    }
}

impl TypedOp for DepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 4,
            "DepthwiseConv: input of rank {}",
            shape.rank()
        );
        let (oh, ow) = self
            .geometry
            .out_hw(shape[2].to_usize()?, shape[3].to_usize()?);
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            shape[1].clone(),
            oh.to_dim(),
            ow.to_dim(),
        ])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Conv written out in f64: `bias + sum over (ky, kx)` of in-range taps.
    fn naive(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        weight: &[f32],
        bias: Option<&[f32]>,
        g: Geometry,
    ) -> Vec<f64> {
        let (oh, ow) = g.out_hw(h, w);
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for b in 0..n {
            for ch in 0..c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = bias.map_or(0.0, |v| f64::from(v[ch]));
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.sy + ky) as isize - g.pads[0] as isize;
                                let ix = (ox * g.sx + kx) as isize - g.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * c + ch) * h + iy as usize) * w + ix as usize];
                                let wv = weight[(ch * g.kh + ky) * g.kw + kx];
                                sum += f64::from(xv) * f64::from(wv);
                            }
                        }
                        out.push(sum);
                    }
                }
            }
        }
        out
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0)
            .collect()
    }

    /// Odd sizes, 3x3 and 7x7 kernels, strides 1 and 2, symmetric and asymmetric padding,
    /// padding wider than the image, with and without bias, 1 and 2 threads: within 1e-5 of
    /// the Conv written out in f64 (49 terms of magnitude <= 1).
    #[test]
    fn equals_the_conv_written_out() {
        let two = tract_linalg::multithread::Executor::multithread(2);
        let geo = |k: usize, s: usize, pads: [usize; 4]| Geometry {
            kh: k,
            kw: k,
            sy: s,
            sx: s,
            pads,
        };
        for (dims, g) in [
            ([2, 3, 13, 11], geo(3, 1, [1, 1, 1, 1])),
            ([1, 4, 16, 16], geo(7, 1, [3, 3, 3, 3])),
            ([1, 2, 15, 9], geo(7, 2, [3, 3, 3, 3])),
            ([2, 2, 8, 10], geo(3, 2, [0, 1, 1, 0])),
            ([1, 2, 3, 2], geo(7, 1, [3, 3, 3, 3])),
            (
                [1, 3, 5, 6],
                Geometry {
                    kh: 3,
                    kw: 1,
                    sy: 1,
                    sx: 2,
                    pads: [1, 0, 1, 0],
                },
            ),
        ] {
            let [n, c, h, w] = dims;
            let x = values(n * c * h * w, 1);
            let weight = values(c * g.kh * g.kw, 2);
            let bias = values(c, 3);
            for with_bias in [false, true] {
                let op = DepthwiseConv {
                    weight: weight.clone().into(),
                    bias: with_bias.then(|| bias.clone().into()),
                    channels: c,
                    geometry: g,
                };
                let want = naive(&x, dims, &weight, with_bias.then_some(&bias[..]), g);
                let input = Tensor::from_shape(&dims, &x).unwrap();
                let run = || op.run(&input).unwrap();
                for threads in [1, 2] {
                    let out = if threads > 1 {
                        tract_linalg::multithread::multithread_tract_scope(two.clone(), run)
                    } else {
                        run()
                    };
                    let (oh, ow) = g.out_hw(h, w);
                    let got = out.to_plain_array_view::<f32>().unwrap();
                    assert_eq!(got.shape(), &[n, c, oh, ow]);
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(*a) - b).abs() <= 1e-5,
                            "{dims:?} {g:?} bias={with_bias} threads={threads}: output {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
