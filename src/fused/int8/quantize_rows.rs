//! [`QuantizeRows`]: the quantizer's per-row symmetric int8 quantization (abs-max, scale,
//! divide, round, cast) as one op in two passes per row, with the graph's arithmetic in
//! its order, spread over the engine's pool by rows.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use crate::fused::parallel::row_tasks;
use crate::fused::rewrite::attr;
use crate::fused::Signature;

pub(super) const QUANTIZE_OP: &str = "ClipPerceptionQuantizeRows";

pub(super) fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let eps = attr(node, "eps").map(|a| a.f).unwrap_or(0.0);
    Ok((expand(QuantizeRowsExpansion { eps }), vec![]))
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
}
