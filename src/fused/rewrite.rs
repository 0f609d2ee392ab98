//! What the engine's graph rewrites share ([`super::int8`], [`super::transformer_ops`]): an
//! index of an ONNX graph (who produces and who reads each tensor, the initializers) to
//! match node chains, and a set of removals and replacements applied in one pass.

use std::collections::HashMap;

use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// ONNX TensorProto data type of f32.
pub(crate) const ONNX_FLOAT: i64 = 1;

/// The model's version of the default ONNX operator set (0 when it declares none).
pub(crate) fn onnx_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0)
}

/// Whether `node` is an op of the default ONNX domain.
pub(crate) fn is_onnx(node: &NodeProto) -> bool {
    node.domain.is_empty() || node.domain == "ai.onnx"
}

pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The single f32 value of a scalar (or one-element) tensor.
pub(crate) fn scalar_f32(t: &TensorProto) -> Option<f32> {
    if t.data_type != ONNX_FLOAT as i32 {
        return None;
    }
    if let Some(v) = t.float_data.first() {
        return (t.float_data.len() == 1).then_some(*v);
    }
    (t.raw_data.len() == 4).then(|| f32::from_le_bytes(t.raw_data[..4].try_into().unwrap()))
}

/// Producers, readers and initializers of a graph's tensors.
pub(crate) struct GraphIndex<'g> {
    pub nodes: &'g [NodeProto],
    pub inits: HashMap<&'g str, &'g TensorProto>,
    producer: HashMap<&'g str, usize>,
    uses: HashMap<&'g str, usize>,
}

impl<'g> GraphIndex<'g> {
    pub fn new(graph: &'g GraphProto) -> Self {
        let nodes = &graph.node[..];
        let inits = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let producer = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
            .collect();
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for input in nodes.iter().flat_map(|n| &n.input) {
            *uses.entry(input.as_str()).or_default() += 1;
        }
        for o in &graph.output {
            *uses.entry(o.name.as_str()).or_default() += 1;
        }
        GraphIndex {
            nodes,
            inits,
            producer,
            uses,
        }
    }

    /// Whether exactly one node input (or graph output) reads `tensor`.
    pub fn single_use(&self, tensor: &str) -> bool {
        self.uses.get(tensor).copied() == Some(1)
    }

    /// The node that produces `tensor`.
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        self.producer.get(tensor).copied()
    }

    /// The node that produces `tensor`, if its op type is `op`.
    pub fn produced_by(&self, tensor: &str, op: &str) -> Option<usize> {
        self.producer(tensor)
            .filter(|&i| self.nodes[i].op_type == op)
    }

    /// The one node that reads `tensor`, when exactly one node input (and no graph
    /// output) reads it.
    pub fn single_reader(&self, tensor: &str) -> Option<usize> {
        if !self.single_use(tensor) {
            return None;
        }
        self.nodes
            .iter()
            .position(|n| n.input.iter().any(|i| i == tensor))
    }

    /// The value of a scalar f32 initializer.
    pub fn init_f32(&self, tensor: &str) -> Option<f32> {
        self.inits.get(tensor).and_then(|t| scalar_f32(t))
    }
}

/// Nodes to drop and nodes to put in place of others, applied together.
pub(crate) struct Rewrite {
    remove: Vec<bool>,
    replace: HashMap<usize, NodeProto>,
}

impl Rewrite {
    pub fn new(nodes: usize) -> Self {
        Rewrite {
            remove: vec![false; nodes],
            replace: HashMap::new(),
        }
    }

    pub fn remove(&mut self, node: usize) {
        self.remove[node] = true;
    }

    pub fn is_removed(&self, node: usize) -> bool {
        self.remove[node]
    }

    /// Puts `new` where node `node` is (node order stays topological).
    pub fn replace(&mut self, node: usize, new: NodeProto) {
        self.replace.insert(node, new);
    }

    /// Rewrites the graph's node list; returns how many replacements of each op type went in.
    pub fn apply(mut self, graph: &mut GraphProto) -> HashMap<String, usize> {
        let mut inserted: HashMap<String, usize> = HashMap::new();
        let old = std::mem::take(&mut graph.node);
        for (i, node) in old.into_iter().enumerate() {
            if let Some(new) = self.replace.remove(&i) {
                *inserted.entry(new.op_type.clone()).or_default() += 1;
                graph.node.push(new);
            } else if !self.remove[i] {
                graph.node.push(node);
            }
        }
        inserted
    }
}

/// A node of the engine's own domain replacing `old` (named after it).
pub(crate) fn fused_node(
    old: &NodeProto,
    op: &str,
    input: Vec<String>,
    output: Vec<String>,
    f32_attrs: &[(&str, f32)],
) -> NodeProto {
    NodeProto {
        name: format!("{}.fused", old.name),
        op_type: op.into(),
        domain: "ai.clip_perception".into(),
        input,
        output,
        attribute: f32_attrs
            .iter()
            .map(|(name, f)| AttributeProto {
                name: (*name).into(),
                f: *f,
                r#type: 1, // FLOAT
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
