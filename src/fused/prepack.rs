//! Weights packed straight from the decoded ONNX file, before tract parses the graph.
//!
//! tract turns every initializer into a tensor while the decoded file (the protobuf) is
//! still whole, and the fused Linear ops then pack their weight from that tensor: the
//! weights were held twice while a graph parsed (the fp32 text tower of ViT-B/32: 538 MB
//! for a 254 MB file). [`prepack_nodes`] packs the weight of each fused node from its
//! initializer's bytes instead and removes the initializer (freed before the next weight is
//! packed); the node names its packed weight by the attribute [`PREPACKED_ATTR`] and loses
//! the weight input, and its `parse` takes the weight ([`lookup`]). The weights live in a
//! process-wide table for as long as the returned [`PrepackedWeights`] does (the parse):
//! the ops that took them keep their own `Arc`.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::*;

use super::rewrite::attr;

/// The node attribute naming a packed weight.
pub(crate) const PREPACKED_ATTR: &str = "prepacked";

type Packed = Arc<dyn Any + Send + Sync>;

static TABLE: Mutex<BTreeMap<i64, Packed>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicI64 = AtomicI64::new(1);

fn table() -> std::sync::MutexGuard<'static, BTreeMap<i64, Packed>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The weights packed for one graph, held until it is parsed (dropping it forgets them).
#[derive(Debug, Default)]
pub struct PrepackedWeights {
    ids: Vec<i64>,
}

impl PrepackedWeights {
    /// How many weights were packed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Takes `other`'s weights into this set.
    pub fn extend(&mut self, mut other: PrepackedWeights) {
        self.ids.append(&mut other.ids);
    }
}

impl Drop for PrepackedWeights {
    fn drop(&mut self) {
        let mut table = table();
        for id in &self.ids {
            table.remove(id);
        }
    }
}

/// The packed weight a node names ([`PREPACKED_ATTR`]), or `None` when it names none.
pub(crate) fn lookup<T: Send + Sync + 'static>(node: &NodeProto) -> TractResult<Option<Arc<T>>> {
    let Some(a) = attr(node, PREPACKED_ATTR) else {
        return Ok(None);
    };
    let packed = table()
        .get(&a.i)
        .cloned()
        .with_context(|| format!("{}: no packed weight {}", node.name, a.i))?;
    match packed.downcast::<T>() {
        Ok(packed) => Ok(Some(packed)),
        Err(_) => bail!("{}: packed weight {} is of another kind", node.name, a.i),
    }
}

/// For every node of type `op` whose input `weight_input` is a 2-D initializer of ONNX
/// type `data_type` that no other node reads: `pack(node, initializer, k, n)` packs it
/// (`None`: left as it is), the initializer is removed (and its graph input, in older
/// graphs that list initializers as inputs) before the next, and the node names the packed
/// weight instead of reading the input.
pub(crate) fn prepack_nodes(
    graph: &mut GraphProto,
    op: &str,
    weight_input: usize,
    data_type: i32,
    mut pack: impl FnMut(&NodeProto, &TensorProto, usize, usize) -> Option<Packed>,
) -> PrepackedWeights {
    // A subgraph (If, Loop, Scan) may read an outer initializer by name: such graphs keep
    // their initializers (no CLIP tower has one).
    let subgraphs = graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    if subgraphs {
        return PrepackedWeights::default();
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            *uses.entry(input.clone()).or_default() += 1;
        }
    }
    let mut packed = PrepackedWeights::default();
    for ix in 0..graph.node.len() {
        let node = &graph.node[ix];
        if node.op_type != op
            || node.input.len() <= weight_input
            || attr(node, PREPACKED_ATTR).is_some()
        {
            continue;
        }
        let weight = &node.input[weight_input];
        if uses.get(weight) != Some(&1) {
            continue;
        }
        let Some(at) = graph.initializer.iter().position(|t| t.name == *weight) else {
            continue;
        };
        let t = &graph.initializer[at];
        let (k, n) = match t.dims[..] {
            [k, n] if k > 0 && n > 0 && t.data_type == data_type => (k as usize, n as usize),
            _ => continue,
        };
        let Some(weight_packed) = pack(node, t, k, n) else {
            continue;
        };
        let weight = weight.clone();
        graph.initializer.swap_remove(at);
        graph.input.retain(|i| i.name != weight);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        table().insert(id, weight_packed);
        packed.ids.push(id);
        let node = &mut graph.node[ix];
        node.input.remove(weight_input);
        node.attribute.push(AttributeProto {
            name: PREPACKED_ATTR.into(),
            i: id,
            r#type: 2, // INT
            ..Default::default()
        });
    }
    packed
}

/// An initializer's `len` values of 4 bytes each (`raw_data` little-endian, else the typed
/// field `typed`), or `None` if it holds another count.
pub(crate) fn values_4<T: Copy>(
    t: &TensorProto,
    len: usize,
    from_le: fn([u8; 4]) -> T,
    typed: &[T],
) -> Option<Vec<T>> {
    if t.raw_data.len() == 4 * len {
        Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| from_le([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    } else if typed.len() == len {
        Some(typed.to_vec())
    } else {
        None
    }
}
