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
//!
//! This module finds the chains and rewrites them; each op is in its own file:
//! `quantize_rows` ([`QuantizeRows`]), `dequantize_rows` ([`DequantizeRows`]) and `linear`
//! ([`Int8Linear`]).

mod dequantize_rows;
mod linear;
mod quantize_rows;

use std::collections::HashMap;

use tract_onnx::pb::{ModelProto, NodeProto};

use super::rewrite::{attr, fused_node, GraphIndex, Rewrite, ONNX_FLOAT};
use crate::kernels::int8_gemm::Int8Choice;
use dequantize_rows::DEQUANTIZE_OP;
use linear::LINEAR_OP;
use quantize_rows::QUANTIZE_OP;

pub use dequantize_rows::DequantizeRows;
pub use linear::Int8Linear;
pub use quantize_rows::QuantizeRows;

/// ONNX TensorProto data type of int64.
const ONNX_INT64: i32 = 7;
/// ONNX TensorProto data type of int8.
const ONNX_INT8: i64 = 3;

/// Registers the fused ops with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(QUANTIZE_OP, quantize_rows::parse);
    onnx.op_register
        .insert(DEQUANTIZE_OP, dequantize_rows::parse);
    onnx.op_register.insert(LINEAR_OP, linear::parse);
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

/// Packs the weights of the fused Linear layers straight from their initializers' bytes
/// and drops the initializers (`linear::prepack`); the returned weights must outlive the
/// parse of `model`.
pub fn prepack_weights(model: &mut ModelProto) -> super::prepack::PrepackedWeights {
    match model.graph.as_mut() {
        Some(graph) => linear::prepack(graph),
        None => Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;

    use super::*;
    use crate::kernels::int8_gemm::Int8Kernel;

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
            // On two threads, the weights packed from the decoded file before parsing, as
            // the engine's loader does (`prepack_weights`); on one, taken as constants.
            let prepacked = match choice {
                Some(Int8Choice::Own(_)) if threads == 2 => {
                    let prepacked = prepack_weights(&mut proto);
                    assert_eq!(prepacked.len(), 13);
                    Some(prepacked)
                }
                _ => None,
            };
            let model = onnx
                .with_ignore_value_info(true)
                .parse(&proto, path.parent().and_then(|p| p.to_str()))
                .unwrap()
                .model
                .with_input_fact(0, f32::fact([2, 3, 224, 224]).into())
                .unwrap()
                .into_optimized()
                .unwrap();
            drop(prepacked);
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
        let proto = tract_onnx::onnx().proto_model_for_path(path).unwrap();
        let model = crate::model::encoder::parse_onnx(path, proto, fusions).unwrap();
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
