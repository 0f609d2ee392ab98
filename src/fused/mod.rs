//! The engine's own fused operators, swapped into the ONNX graphs before tract parses them,
//! one op per file: `rewrite` finds node chains in the ONNX protobuf, [`int8`] replaces
//! the int8 encoder's quantize/dequantize chains (its ops in `int8/`), [`linear`] the fp32
//! Linear layers and [`patch_conv`] the image tower's patch embedding (both on the engine's
//! own fp32 product), [`depthwise_conv`] the convolution towers' depthwise convolutions
//! (computed directly), [`layer_norm`] LayerNorm, [`attention`] each layer's attention,
//! [`transformer_ops`] the remaining softmax nodes and QuickGELU (where no Linear op takes
//! it). `output_stage` is the output stage both Linear ops share (bias, QuickGELU and the
//! skip connections' Adds, taken into the product), `Signature` the opening every op's
//! inference rules share, `simd` dispatches the elementwise kernels to AVX-512/AVX2 at run
//! time and `parallel` spreads them over the engine's thread pool. The activation
//! functions the ops share with the kernels' output stages come from
//! [`crate::kernels`]. Each fused op computes what the chain it replaces computes (tests
//! compare them).

#[macro_use]
mod simd;
pub mod attention;
pub mod depthwise_conv;
pub mod int8;
pub mod layer_norm;
pub mod linear;
mod output_stage;
mod parallel;
pub mod patch_conv;
pub mod prepack;
mod rewrite;
pub mod transformer_ops;

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

/// The opening every fused op's inference rules share: how many inputs it takes, the
/// datum type of each input and of each output. `rules` checks it, then each op adds its
/// shapes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signature {
    /// The type of each input, in order.
    pub inputs: &'static [DatumType],
    /// How many of the last inputs may be absent (a bias, a mask).
    pub optional: usize,
    /// The type of each output, in order.
    pub outputs: &'static [DatumType],
}

impl Signature {
    /// x, a weight and an optional bias, all f32, to one f32 output: the fp32 ops with a
    /// weight (Linear, LayerNorm, the patch and depthwise convolutions).
    pub const F32_WEIGHT_OP: Signature = Signature {
        inputs: &[DatumType::F32; 3],
        optional: 1,
        outputs: &[DatumType::F32],
    };

    /// The signature's rules for the op named `op` (named in errors).
    pub fn rules<'r, 'p: 'r>(
        &self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
        op: &str,
    ) -> TractResult<()> {
        let (max, min) = (self.inputs.len(), self.inputs.len() - self.optional);
        let expected = match max - min {
            0 => format!("{max}"),
            1 => format!("{min} or {max}"),
            _ => format!("{min} to {max}"),
        };
        ensure!(
            (min..=max).contains(&inputs.len()),
            "{op}: {} inputs, expected {expected}",
            inputs.len()
        );
        check_output_arity(outputs, self.outputs.len())?;
        for (input, &dt) in inputs.iter().zip(self.inputs) {
            s.equals(&input.datum_type, dt)?;
        }
        for (output, &dt) in outputs.iter().zip(self.outputs) {
            s.equals(&output.datum_type, dt)?;
        }
        Ok(())
    }
}

/// The constant value of input `i` of the fused op `op` being wired as `prefix` (a weight,
/// scales or a bias, which the op packs or keeps when the graph is built).
pub(crate) fn constant_input(
    model: &TypedModel,
    inputs: &[OutletId],
    i: usize,
    (prefix, op): (&str, &str),
) -> TractResult<Arc<Tensor>> {
    model
        .outlet_fact(inputs[i])?
        .konst
        .clone()
        .with_context(|| format!("{prefix}: {op} input {i} is not a constant"))
}

/// Input `i` as a constant vector of `len` f32 values ([`constant_input`]).
pub(crate) fn constant_f32_vector(
    model: &TypedModel,
    inputs: &[OutletId],
    i: usize,
    len: usize,
    (prefix, op): (&str, &str),
) -> TractResult<Arc<[f32]>> {
    let t = constant_input(model, inputs, i, (prefix, op))?;
    let ram = t.try_as_plain_ram()?;
    let v = ram.as_slice::<f32>()?;
    ensure!(
        v.len() == len,
        "{prefix}: {op} input {i} has {} values, expected {len}",
        v.len()
    );
    Ok(v.into())
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::ModelProto;
    use tract_onnx::prelude::*;

    /// A graph rewrite under test: registers its ops, returns how many nodes it fused.
    type Fuse<'a> = &'a dyn Fn(&mut tract_onnx::Onnx, &mut ModelProto) -> usize;

    /// Runs the tiny fixture's `file` on `input`, rewritten by `fuse` first when given.
    fn run_fixture(
        file: &str,
        input: Tensor,
        fuse: Option<Fuse>,
        threads: usize,
    ) -> (Vec<f32>, usize) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-clip")
            .join(file);
        let mut onnx = tract_onnx::onnx().with_ignore_value_info(true);
        let mut proto = onnx.proto_model_for_path(&path).unwrap();
        let count = fuse.map_or(0, |fuse| fuse(&mut onnx, &mut proto));
        let model = onnx
            .parse(&proto, path.parent().and_then(|p| p.to_str()))
            .unwrap()
            .model
            .with_input_fact(
                0,
                InferenceFact::dt_shape(input.datum_type(), input.shape()),
            )
            .unwrap()
            .into_optimized()
            .unwrap();
        let mut options = RunOptions::default();
        if threads > 1 {
            options.executor = Some(tract_linalg::multithread::Executor::multithread(threads));
        }
        let plan = model.into_runnable_with_options(&options).unwrap();
        let out = plan.run(tvec!(input.into())).unwrap();
        let values = out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        (values, count)
    }

    /// The tiny fixture's fp32 image, int8 image and text towers, rewritten by `fuse`
    /// (which must fuse `counts` nodes in each), on 1 and 2 threads: embeddings within 1e-6
    /// of tract's unfused graphs.
    pub(crate) fn fused_towers_equal_the_unfused_graphs(
        fuse: impl Fn(&mut tract_onnx::Onnx, &mut ModelProto) -> usize,
        counts: [usize; 3],
    ) {
        let pixels: Vec<f32> = (0..2 * 3 * 224 * 224)
            .map(|i: usize| ((i.wrapping_mul(7919) % 2003) as f32 / 2003.0) * 4.0 - 2.0)
            .collect();
        let image = Tensor::from_shape(&[2, 3, 224, 224], &pixels).unwrap();
        // "<sot> a red cup <eot>" padded, and a longer phrase, at the real length (8 tokens).
        let ids: Vec<i64> = [49406, 320, 736, 4365, 49407, 0, 0, 0]
            .into_iter()
            .chain([49406, 320, 1125, 539, 320, 736, 4365, 49407])
            .collect();
        let text = Tensor::from_shape(&[2, 8], &ids).unwrap();
        for ((file, input), count) in [
            ("image_encoder.onnx", image.clone()),
            ("image_encoder_int8.onnx", image),
            ("text_encoder.onnx", text),
        ]
        .into_iter()
        .zip(counts)
        {
            let (want, _) = run_fixture(file, input.clone(), None, 1);
            for threads in [1, 2] {
                let (got, fused) = run_fixture(file, input.clone(), Some(&fuse), threads);
                assert_eq!(fused, count, "{file}: nodes fused");
                assert_eq!(got.len(), want.len());
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-6,
                    "{file}, {threads} threads: max abs diff {worst}"
                );
            }
        }
    }
}
