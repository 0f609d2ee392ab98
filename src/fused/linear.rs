//! The fp32 Linear layers (`MatMul(x, W)` with a constant 2-D weight, and the bias `Add`
//! that follows it) on the engine's own fp32 product ([`crate::kernels::f32_gemm`]): the
//! weight is packed once when the op is built, the bias is added in the product's output
//! stage, and x of any rank [..., K] is one [rows, K] product (no copy).
//!
//! Where it runs: on CPUs with AVX2 and FMA, unless `CLIP_PERCEPTION_F32_KERNEL=tract`
//! ([`f32_gemm::use_own_kernel`]); the int8 graph's Linear layers are integer products and
//! are not touched. Results differ from tract's product by summation order only.

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::output_stage::{fuse_output_stage, residual_input, OutputStage, WithOutputStage};
use super::parallel::engine_pool;
use super::prepack::{lookup, prepack_nodes, values_4, PrepackedWeights};
use super::rewrite::{fused_node, is_onnx, GraphIndex, Rewrite, ONNX_FLOAT};
use super::{constant_f32_vector, constant_input, Signature};
use crate::kernels::f32_gemm::{self, PackedF32};

const LINEAR_OP: &str = "ClipPerceptionLinearF32";

/// Registers the fused op with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(LINEAR_OP, parse_linear);
}

fn parse_linear(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let prepacked = lookup::<PackedF32>(node)?;
    Ok((expand(LinearExpansion { prepacked }), vec![]))
}

/// Packs the weight of every fused node whose weight is an f32 [K, N] initializer read by
/// it alone, straight from the initializer's bytes (`fused::prepack`).
pub fn prepack(model: &mut ModelProto) -> PrepackedWeights {
    let Some(graph) = model.graph.as_mut() else {
        return PrepackedWeights::default();
    };
    prepack_nodes(graph, LINEAR_OP, 1, ONNX_FLOAT as i32, |_, t, k, n| {
        let values = values_4(t, k * n, f32::from_le_bytes, &t.float_data)?;
        Some(Arc::new(PackedF32::pack(&values, k, n)))
    })
}

/// An f32 initializer's dims when it has `rank` of them.
fn f32_init<'g>(g: &GraphIndex<'g>, name: &str, rank: usize) -> Option<&'g TensorProto> {
    g.inits
        .get(name)
        .copied()
        .filter(|t| t.data_type == ONNX_FLOAT as i32 && t.dims.len() == rank)
}

/// Rewrites every `MatMul(x, W)` with W a 2-D f32 initializer (and the `Add` of a [N] f32
/// initializer that alone reads its result, in either order) into one fused node; returns
/// how many (and how many of them took their bias).
pub fn fuse(model: &mut ModelProto) -> (usize, usize) {
    let Some(graph) = model.graph.as_mut() else {
        return (0, 0);
    };
    let g = GraphIndex::new(graph);
    let mut rewrite = Rewrite::new(g.nodes.len());
    let mut with_bias = 0;
    for (ix, node) in g.nodes.iter().enumerate() {
        if node.op_type != "MatMul" || !is_onnx(node) || node.input.len() != 2 {
            continue;
        }
        let (x, w) = (&node.input[0], &node.input[1]);
        let Some(weight) = f32_init(&g, w, 2) else {
            continue;
        };
        if g.inits.contains_key(x.as_str()) {
            continue;
        }
        let n = weight.dims[1];
        // The bias Add reading the product alone, its other input a [N] f32 initializer.
        let add = g.single_reader(&node.output[0]).filter(|&a| {
            let add = &g.nodes[a];
            add.op_type == "Add"
                && is_onnx(add)
                && add.input.len() == 2
                && add
                    .input
                    .iter()
                    .find(|i| **i != node.output[0])
                    .and_then(|b| f32_init(&g, b, 1))
                    .is_some_and(|b| b.dims[0] == n)
        });
        let mut inputs = vec![x.clone(), w.clone()];
        let (at, output) = match add {
            Some(a) => {
                let add = &g.nodes[a];
                let bias = add.input.iter().find(|i| **i != node.output[0]);
                inputs.extend(bias.cloned());
                rewrite.remove(ix);
                with_bias += 1;
                (a, add.output[0].clone())
            }
            None => (ix, node.output[0].clone()),
        };
        let fused = fused_node(&g.nodes[at], LINEAR_OP, inputs, vec![output], &[]);
        rewrite.replace(at, fused);
    }
    let count = rewrite.apply(graph).get(LINEAR_OP).copied().unwrap_or(0);
    (count, with_bias)
}

#[derive(Debug, Clone)]
struct LinearExpansion {
    /// The weight packed before parsing (`fused::prepack`); `None`: the weight is input 1.
    prepacked: Option<Arc<PackedF32>>,
}

impl Expansion for LinearExpansion {
    fn name(&self) -> StaticName {
        LINEAR_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> TractResult<()> {
        let prepacked = self.prepacked.clone();
        match &prepacked {
            // x and an optional bias.
            Some(_) => Signature {
                inputs: &[DatumType::F32, DatumType::F32],
                optional: 1,
                outputs: &[DatumType::F32],
            }
            .rules(s, inputs, outputs, LINEAR_OP)?,
            None => {
                Signature::F32_WEIGHT_OP.rules(s, inputs, outputs, LINEAR_OP)?;
                s.equals(&inputs[1].rank, 2)?;
            }
        }
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            ensure!(rank >= 1, "{LINEAR_OP}: rank-0 input");
            for axis in 0..rank - 1 {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            match &prepacked {
                Some(packed) => {
                    s.equals(&inputs[0].shape[rank - 1], packed.k().to_dim())?;
                    s.equals(&outputs[0].shape[rank - 1], packed.n().to_dim())
                }
                None => s.equals(&outputs[0].shape[rank - 1], &inputs[1].shape[1]),
            }
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let names = (prefix, LINEAR_OP);
        let (packed, bias_input) = match &self.prepacked {
            Some(packed) => (packed.clone(), 1),
            None => {
                let weight = constant_input(model, inputs, 1, names)?;
                let &[k, n] = weight.shape() else {
                    bail!("{prefix}: weight of shape {:?}", weight.shape());
                };
                let w = weight.try_as_plain_ram()?;
                (Arc::new(PackedF32::pack(w.as_slice::<f32>()?, k, n)), 2)
            }
        };
        let n = packed.n();
        let bias = match inputs.get(bias_input) {
            Some(_) => Some(constant_f32_vector(model, inputs, bias_input, n, names)?),
            None => None,
        };
        let op = LinearF32 {
            packed,
            stage: OutputStage::bias(bias),
        };
        model.wire_node(prefix, op, &inputs[..1])
    }
}

/// `y = x W (+ bias)`, then QuickGELU if the op took the one that read it, then `+ residual`
/// if it took the skip connection's Add (`fused::output_stage`), over the last axis of x,
/// on the weight packed at load. Inputs: x, and the residual (x's shape but the last axis
/// N) when it took the Add.
#[derive(Debug, Clone)]
pub struct LinearF32 {
    packed: Arc<PackedF32>,
    /// The bias, and the QuickGELU and residual Add the op took
    /// (`fused::output_stage`).
    stage: OutputStage,
}

impl PartialEq for LinearF32 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed) && self.stage == other.stage
    }
}

impl WithOutputStage for LinearF32 {
    fn output_stage(&self) -> &OutputStage {
        &self.stage
    }

    fn with_output_stage(&self, stage: OutputStage) -> Self {
        LinearF32 {
            stage,
            ..self.clone()
        }
    }
}

impl Eq for LinearF32 {}

impl Op for LinearF32 {
    fn name(&self) -> StaticName {
        "LinearF32".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "f32 {}x{}{}",
            self.packed.k(),
            self.packed.n(),
            self.stage.info()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearF32 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (k, n) = (self.packed.k(), self.packed.n());
        let x = &inputs[0];
        let shape = x.shape();
        ensure!(
            shape.last() == Some(&k),
            "LinearF32: input of shape {shape:?}, expected [..., {k}]"
        );
        let m = shape[..shape.len() - 1].iter().product::<usize>();
        let mut out_shape: TVec<usize> = shape.into();
        *out_shape.last_mut().expect("rank >= 1") = n;
        // SAFETY: f32 has no invalid bit patterns, and `gemm` writes every one of the m*n
        // outputs before it is read.
        let mut out = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        {
            let xr = x.try_as_plain_ram()?;
            let residual = residual_input(self.stage.residual, &inputs, m * n)?
                .map(|r| r.try_as_plain_ram())
                .transpose()?;
            let residual = residual.as_ref().map(|r| r.as_slice::<f32>()).transpose()?;
            let mut ov = out.try_as_plain_ram_mut()?;
            let pool = engine_pool();
            f32_gemm::gemm(
                xr.as_slice::<f32>()?,
                m,
                &self.packed,
                self.stage.epilogue(residual),
                ov.as_slice_mut::<f32>()?,
                pool.as_deref(),
            );
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for LinearF32 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        ensure!(!shape.is_empty(), "LinearF32: rank-0 input");
        *shape.last_mut().expect("rank >= 1") = self.packed.n().to_dim();
        Ok(tvec!(f32::fact(shape)))
    }

    fn fuse(&self, model: &TypedModel, node: &TypedNode) -> TractResult<Option<TypedModelPatch>> {
        fuse_output_stage(self, model, node)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::transformer_ops::{Kind, Unary};

    /// Both fp32 towers of the tiny fixture: every Linear layer is fused (image: q, k, v,
    /// out, fc1, fc2 of 2 layers and the projection; text: the same), the int8 graph's
    /// integer products are left alone, and the embeddings equal tract's unfused graphs
    /// within 1e-6.
    #[test]
    fn fused_towers_equal_the_unfused_graphs() {
        if !PackedF32::is_available() {
            eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
            return;
        }
        crate::fused::tests::fused_towers_equal_the_unfused_graphs(
            |onnx, proto| {
                register(onnx);
                fuse(proto).0
            },
            [13, 0, 13],
        );
    }

    /// A k x n LinearF32 with a bias, its weights spread over about +-(11 x `scale`).
    fn test_op(k: usize, n: usize, scale: f32) -> LinearF32 {
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37) % 23) as f32 * scale - 11.0 * scale)
            .collect();
        LinearF32 {
            packed: Arc::new(PackedF32::pack(&w, k, n)),
            stage: OutputStage::bias(Some((0..n).map(|j| j as f32 * 0.3 - 2.0).collect())),
        }
    }

    /// `model` optimised (its fusions applied), after checking that it gives the unoptimised
    /// model's outputs on `inputs` bit for bit (`what` names the case).
    fn optimised_as_before(model: TypedModel, inputs: TVec<TValue>, what: &str) -> TypedModel {
        let want = model
            .clone()
            .into_runnable()
            .unwrap()
            .run(inputs.clone())
            .unwrap();
        let optimised = model.into_optimized().unwrap();
        let got = optimised
            .clone()
            .into_runnable()
            .unwrap()
            .run(inputs)
            .unwrap();
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.shape(), w.shape(), "{what}");
            assert_eq!(
                g.to_plain_array_view::<f32>().unwrap(),
                w.to_plain_array_view::<f32>().unwrap(),
                "{what}"
            );
        }
        optimised
    }

    /// `Add(r, LinearF32(x))` in a typed graph: optimising takes the Add into the op when r
    /// has the sum's shape, with the unoptimised graph's result bit for bit; a residual that
    /// broadcasts (or a second reader of the product) keeps tract's Add, with its result.
    #[test]
    fn the_skip_connection_add_is_taken_in_only_where_shapes_are_equal() {
        if !PackedF32::is_available() {
            eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
            return;
        }
        let (k, n) = (7, 19);
        let x = Tensor::from_shape(
            &[2, 3, k],
            &(0..2 * 3 * k)
                .map(|i| ((i * 13) % 17) as f32 * 0.07 - 0.5)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let residual = |shape: &[usize]| {
            let len = shape.iter().product::<usize>();
            Tensor::from_shape(
                shape,
                &(0..len)
                    .map(|i| ((i * 29) % 31) as f32 * 0.19 - 3.0)
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        };
        for (r_shape, second_reader, fused) in [
            (vec![2, 3, n], false, true),
            (vec![1, 3, n], false, false),
            (vec![1, 1, n], false, false),
            (vec![2, 3, n], true, false),
        ] {
            let mut model = TypedModel::default();
            let xs = model.add_source("x", f32::fact([2, 3, k])).unwrap();
            let rs = model.add_source("r", f32::fact(&r_shape)).unwrap();
            let op = test_op(k, n, 0.11);
            let y = model.wire_node("linear", op, &[xs]).unwrap();
            let sum = model
                .wire_node("add", tract_onnx::tract_core::ops::math::add(), &[rs, y[0]])
                .unwrap();
            let mut outputs = vec![sum[0]];
            if second_reader {
                let twice = model
                    .wire_node(
                        "twice",
                        tract_onnx::tract_core::ops::math::add(),
                        &[y[0], y[0]],
                    )
                    .unwrap();
                outputs.push(twice[0]);
            }
            model.select_output_outlets(&outputs).unwrap();
            let inputs = tvec!(x.clone().into(), residual(&r_shape).into());
            let what = format!("residual {r_shape:?}, second reader {second_reader}");
            let optimised = optimised_as_before(model, inputs, &what);
            let with_residual = optimised
                .nodes()
                .iter()
                .filter(|node| node.op().info().unwrap().concat().contains("residual"))
                .count();
            assert_eq!(with_residual, fused as usize, "{what}");
        }
    }

    /// `LinearF32(x)` read by QuickGELU alone (and that by a skip connection's Add, or not):
    /// optimising takes the activation into the op's output stage (and then the Add), with
    /// the unoptimised graph's result (the separate QuickGELU pass) bit for bit. A second
    /// reader of the product, or a residual Add taken before the activation, keeps the
    /// separate pass.
    #[test]
    fn quick_gelu_is_taken_into_the_output_stage_with_the_same_result() {
        if !PackedF32::is_available() {
            eprintln!("no AVX2 + FMA on this CPU: the fp32 kernel is not used here");
            return;
        }
        let (k, n) = (9, 21);
        let values = |len: usize, seed: usize| {
            (0..len)
                .map(|i| ((i * 13 + seed) % 17) as f32 * 0.31 - 2.5)
                .collect::<Vec<_>>()
        };
        let x = Tensor::from_shape(&[2, 3, k], &values(2 * 3 * k, 1)).unwrap();
        let r = Tensor::from_shape(&[2, 3, n], &values(2 * 3 * n, 5)).unwrap();
        let gelu = || Unary(Kind::QuickGelu { alpha: 1.702 });
        let add = tract_onnx::tract_core::ops::math::add;
        // (graph, fused: the op's info after optimising, QuickGELU passes left)
        #[derive(Debug, Clone, Copy)]
        enum Graph {
            Gelu,
            GeluThenAdd,
            GeluAndSecondReader,
            AddThenGelu,
        }
        for (graph, info, passes_left) in [
            (Graph::Gelu, "f32 9x21, bias, QuickGELU", 0),
            (Graph::GeluThenAdd, "f32 9x21, bias, QuickGELU, residual", 0),
            (Graph::GeluAndSecondReader, "f32 9x21, bias", 1),
            (Graph::AddThenGelu, "f32 9x21, bias, residual", 1),
        ] {
            let mut model = TypedModel::default();
            let xs = model.add_source("x", f32::fact([2, 3, k])).unwrap();
            let rs = model.add_source("r", f32::fact([2, 3, n])).unwrap();
            let y = model
                .wire_node("linear", test_op(k, n, 0.21), &[xs])
                .unwrap()[0];
            let outputs = match graph {
                Graph::Gelu => vec![model.wire_node("gelu", gelu(), &[y]).unwrap()[0]],
                Graph::GeluThenAdd => {
                    let g = model.wire_node("gelu", gelu(), &[y]).unwrap()[0];
                    vec![model.wire_node("add", add(), &[rs, g]).unwrap()[0]]
                }
                Graph::GeluAndSecondReader => {
                    let g = model.wire_node("gelu", gelu(), &[y]).unwrap()[0];
                    let twice = model.wire_node("twice", add(), &[y, y]).unwrap()[0];
                    vec![g, twice]
                }
                Graph::AddThenGelu => {
                    let sum = model.wire_node("add", add(), &[rs, y]).unwrap()[0];
                    vec![model.wire_node("gelu", gelu(), &[sum]).unwrap()[0]]
                }
            };
            model.select_output_outlets(&outputs).unwrap();
            let inputs = tvec!(x.clone().into(), r.clone().into());
            let optimised = optimised_as_before(model, inputs, &format!("{graph:?}"));
            let infos: Vec<String> = optimised
                .nodes()
                .iter()
                .filter(|node| node.op_is::<LinearF32>())
                .map(|node| node.op().info().unwrap().concat())
                .collect();
            assert_eq!(infos, [info], "{graph:?}");
            let passes = optimised
                .nodes()
                .iter()
                .filter(|node| node.op_is::<Unary>())
                .count();
            assert_eq!(passes, passes_left, "{graph:?}: QuickGELU passes left");
        }
    }
}
