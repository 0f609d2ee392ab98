//! The CLIP image and text encoders on tract. Each graph is loaded once, checked against
//! the bundle manifest (input/output names, ranks, fixed dims, embedding width), given
//! symbolic batch (and token-length) dims, optimised once, and run through one reused
//! state; the image encoder also reuses its input tensor, into which preprocessing writes.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid};

use super::bundle::{GraphFile, ModelBundle, Precision, QuantForm};
use super::family::TextSpec;
use crate::error::{Error, Result};
use crate::image::frame::RgbImage;
use crate::image::preprocess::Preprocessor;

/// How an encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Threads for matrix products (0 or 1: run on the caller's thread only).
    pub threads: usize,
    /// Which image encoder graph to run; `None`: the bundle's default (int8 where it has
    /// one). The text encoder is always fp32.
    pub precision: Option<Precision>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            threads: 1,
            precision: None,
        }
    }
}

impl EncoderOptions {
    pub fn with_threads(threads: usize) -> Self {
        EncoderOptions {
            threads,
            ..Default::default()
        }
    }
}

/// One embedding per row.
pub type Embeddings = Vec<Vec<f32>>;

type Plan = Arc<TypedRunnableModel>;

/// A graph loaded, validated, optimised, with its reusable state.
struct Runner {
    state: TypedSimpleState,
    path: std::path::PathBuf,
    dim: usize,
    /// The matrix-product thread pool (threads > 1). A forward pass runs on one of its
    /// threads, not the caller's: the pool's idle threads then compete with one thread
    /// for the cores between two products instead of two.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Runner {
    fn run(&mut self, input: TValue) -> Result<Embeddings> {
        let state = &mut self.state;
        let outputs = match &self.pool {
            Some(pool) => pool.install(|| state.run(tvec!(input))),
            None => state.run(tvec!(input)),
        }
        .map_err(|e| Error::inference(format!("{}: run", self.path.display()), e))?;
        let out = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::inference(format!("{}: output", self.path.display()), e))?;
        if out.ndim() != 2 || out.shape()[1] != self.dim {
            return Err(Error::GraphMismatch {
                path: self.path.clone(),
                message: format!(
                    "output has shape {:?}, expected [N, {}]",
                    out.shape(),
                    self.dim
                ),
            });
        }
        Ok(out
            .outer_iter()
            .map(|row| row.iter().copied().collect())
            .collect())
    }
}

/// Time spent per operator kind in one forward pass (for profiling), largest first.
pub type OpProfile = Vec<(String, f64)>;

impl Runner {
    /// Runs once, timing every node; returns milliseconds per operator name.
    fn profile(&mut self, input: TValue) -> Result<OpProfile> {
        use std::collections::HashMap;
        let mut per_op: HashMap<String, f64> = HashMap::new();
        let state = &mut self.state;
        let pass = || {
            state.run_plan_with_eval(tvec!(input), |ctx, state, node, inputs| {
                let start = std::time::Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, state, node, inputs);
                *per_op.entry(node.op().name().to_string()).or_default() +=
                    start.elapsed().as_secs_f64() * 1e3;
                out
            })
        };
        match &self.pool {
            Some(pool) => pool.install(pass),
            None => pass(),
        }
        .map_err(|e| Error::inference(format!("{}: profile", self.path.display()), e))?;
        let mut profile: OpProfile = per_op.into_iter().collect();
        profile.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(profile)
    }
}

/// Fixed dims of an inference fact (`None` where symbolic or unknown), or `None` if the
/// rank itself is unknown.
fn known_dims(fact: &InferenceFact) -> Option<Vec<Option<i64>>> {
    let rank = fact.shape.rank().concretize()?;
    Some(
        (0..rank as usize)
            .map(|i| match fact.shape.dim(i) {
                Some(GenericFactoid::Only(d)) => d.to_i64().ok(),
                _ => None,
            })
            .collect(),
    )
}

fn fmt_dims(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map(|v| v.to_string()).unwrap_or_else(|| "?".into()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// How a graph is parsed and run.
#[derive(Debug, Clone, Copy)]
struct PlanOptions {
    threads: usize,
    /// Which of the engine's fused ops to substitute while parsing.
    fusions: Fusions,
}

/// Graph rewrites applied to the ONNX file before tract parses it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fusions {
    /// The int8 quantize/dequantize chains ([`crate::fused::int8`]).
    pub int8: bool,
    /// Attention ([`crate::fused::attention`]), LayerNorm ([`crate::fused::layer_norm`]),
    /// softmax and QuickGELU ([`crate::fused::transformer_ops`]), depthwise convolutions
    /// ([`crate::fused::depthwise_conv`]).
    pub transformer: bool,
}

/// Parses an ONNX file (value_info ignored: quantized graphs carry symbolic shapes that
/// clash with the input facts set later), with the engine's fused ops substituted.
/// `proto` is the file decoded as it was read and checksummed
/// ([`ModelBundle::decode_verified`]: the file's bytes are never held whole); the fused
/// int8 Linear layers' weights are packed from it before tract parses the rest, so a
/// graph's weights are held once, not twice, at every step of the load; `path` names it in
/// errors and locates external tensor data.
pub(crate) fn parse_onnx(
    path: &Path,
    mut proto: ModelProto,
    fusions: Fusions,
) -> TractResult<InferenceModel> {
    let mut onnx = tract_onnx::onnx().with_ignore_value_info(true);
    if fusions.int8 {
        crate::fused::int8::register(&mut onnx);
        let fused = crate::fused::int8::fuse(&mut proto);
        log::debug!(
            "{}: fused {} int8 quantize and {} dequantize chains, {} int8 products ({} with bias)",
            path.display(),
            fused.quantize,
            fused.dequantize,
            fused.linear,
            fused.bias
        );
    }
    if fusions.transformer && crate::kernels::f32_gemm::use_own_kernel() {
        crate::fused::linear::register(&mut onnx);
        let (linear, bias) = crate::fused::linear::fuse(&mut proto);
        crate::fused::patch_conv::register(&mut onnx);
        let patch_conv = crate::fused::patch_conv::fuse(&mut proto);
        log::debug!(
            "{}: {} fp32 Linear layers ({} with bias) and {} patch-embedding Conv on the \
             engine's fp32 product",
            path.display(),
            linear,
            bias,
            patch_conv
        );
    }
    if fusions.transformer {
        crate::fused::depthwise_conv::register(&mut onnx);
        let depthwise = crate::fused::depthwise_conv::fuse(&mut proto);
        if depthwise > 0 {
            log::debug!(
                "{}: {depthwise} depthwise Conv computed directly",
                path.display()
            );
        }
        crate::fused::attention::register(&mut onnx);
        let attention = crate::fused::attention::fuse(&mut proto);
        crate::fused::layer_norm::register(&mut onnx);
        let layer_norm = crate::fused::layer_norm::fuse(&mut proto);
        crate::fused::transformer_ops::register(&mut onnx);
        let fused = crate::fused::transformer_ops::fuse(&mut proto);
        log::debug!(
            "{}: fused {} attention chains, {} LayerNorms, {} other softmax, {} QuickGELU and {} tanh GELU nodes",
            path.display(),
            attention,
            layer_norm,
            fused.softmax,
            fused.quick_gelu,
            fused.tanh_gelu
        );
    }
    // The fused Linear layers' weights, packed from the decoded file (their initializers
    // freed): held once, not twice, while tract parses the rest (`fused::prepack`).
    let mut prepacked = crate::fused::prepack::PrepackedWeights::default();
    if fusions.int8 {
        prepacked.extend(crate::fused::int8::prepack_weights(&mut proto));
    }
    if fusions.transformer && crate::kernels::f32_gemm::use_own_kernel() {
        prepacked.extend(crate::fused::linear::prepack(&mut proto));
    }
    if !prepacked.is_empty() {
        log::debug!(
            "{}: {} Linear weights packed before parsing",
            path.display(),
            prepacked.len()
        );
    }
    let dir = path.parent().and_then(Path::to_str);
    let parsed = onnx.parse(&proto, dir)?;
    drop(prepacked);
    if !parsed.unresolved_inputs.is_empty() {
        return Err(anyhow::anyhow!(
            "unresolved inputs at top level: {:?}",
            parsed.unresolved_inputs
        ));
    }
    Ok(parsed.model)
}

/// Loads the ONNX graph of `spec`, checks its one input and one output against the
/// manifest, checks the input's fixed dims against `expected_input` (None = any), sets
/// `input_fact`, optimises, and checks the output is [batch, dim].
fn load_runner(
    bundle: &ModelBundle,
    spec: &GraphFile,
    input_dt: DatumType,
    expected_input: &[Option<i64>],
    input_shape: impl FnOnce(&SymbolScope) -> TVec<TDim>,
    dim: usize,
    plan: PlanOptions,
) -> Result<Runner> {
    let path = &bundle.dir.join(&spec.path);
    // Decoded as it is read (tract's `proto_model_for_read` reads the whole file into a
    // buffer grown by doubling, then decodes a copy of every tensor: up to three copies of
    // the weights at once, the load's peak).
    let proto = bundle
        .decode_verified(&spec.path, |buf| ModelProto::decode(buf))?
        .map_err(|e| Error::inference(format!("{}: cannot load ONNX graph", path.display()), e))?;
    let mismatch = |message: String| Error::GraphMismatch {
        path: path.to_path_buf(),
        message,
    };
    let mut model = parse_onnx(path, proto, plan.fusions)
        .map_err(|e| Error::inference(format!("{}: cannot load ONNX graph", path.display()), e))?;

    let inputs = model
        .input_outlets()
        .map_err(|e| Error::inference(path.display().to_string(), e))?
        .to_vec();
    let outputs = model
        .output_outlets()
        .map_err(|e| Error::inference(path.display().to_string(), e))?
        .to_vec();
    if inputs.len() != 1 {
        return Err(mismatch(format!(
            "has {} inputs, expected one (`{}`)",
            inputs.len(),
            spec.input
        )));
    }
    if outputs.len() != 1 {
        return Err(mismatch(format!(
            "has {} outputs, expected one (`{}`)",
            outputs.len(),
            spec.output
        )));
    }
    let input_name = model.node(inputs[0].node).name.clone();
    if input_name != spec.input {
        return Err(mismatch(format!(
            "input is named `{input_name}`, manifest says `{}`",
            spec.input
        )));
    }
    let output_name = model
        .outlet_label(outputs[0])
        .map(str::to_string)
        .unwrap_or_else(|| model.node(outputs[0].node).name.clone());
    if output_name != spec.output {
        return Err(mismatch(format!(
            "output is named `{output_name}`, manifest says `{}`",
            spec.output
        )));
    }
    let fact = model
        .input_fact(0)
        .map_err(|e| Error::inference(path.display().to_string(), e))?;
    if let Some(dt) = fact.datum_type.concretize() {
        if dt != input_dt {
            return Err(mismatch(format!(
                "input `{}` is {dt:?}, expected {input_dt:?}",
                spec.input
            )));
        }
    }
    if let Some(dims) = known_dims(fact) {
        let fits = dims.len() == expected_input.len()
            && dims.iter().zip(expected_input).all(|(d, e)| match (d, e) {
                (Some(d), Some(e)) => d == e,
                _ => true,
            });
        if !fits {
            return Err(mismatch(format!(
                "input `{}` has shape {}, the manifest implies {}",
                spec.input,
                fmt_dims(&dims),
                fmt_dims(expected_input)
            )));
        }
    }
    let shape = input_shape(&model.symbols);
    model = model
        .with_input_fact(0, InferenceFact::dt_shape(input_dt, shape))
        .map_err(|e| Error::inference(path.display().to_string(), e))?;
    let typed = model
        .into_typed()
        .map_err(|e| Error::inference(format!("{}: cannot type the graph", path.display()), e))?;
    let out_fact = typed
        .output_fact(0)
        .map_err(|e| Error::inference(path.display().to_string(), e))?;
    let out_dims: Vec<Option<i64>> = out_fact.shape.iter().map(|d| d.to_i64().ok()).collect();
    if out_dims.len() != 2 || out_dims[1] != Some(dim as i64) {
        return Err(mismatch(format!(
            "output `{}` has shape {}, expected [N, {dim}] (embed_dim {dim})",
            spec.output,
            fmt_dims(&out_dims)
        )));
    }
    let optimized = typed
        .into_optimized()
        .map_err(|e| Error::inference(format!("{}: cannot optimise", path.display()), e))?;
    if log::log_enabled!(log::Level::Trace) {
        for node in optimized.nodes() {
            log::trace!(
                "{}: {} {} {:?} -> {:?}",
                path.display(),
                node.name,
                node.op().name(),
                node.op().info().unwrap_or_default(),
                node.outputs
                    .iter()
                    .map(|o| format!("{:?}", o.fact))
                    .collect::<Vec<_>>()
            );
        }
    }
    let mut run_options = RunOptions::default();
    let mut pool = None;
    if plan.threads > 1 {
        let threads = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("clip-mm-{i}"))
            .num_threads(plan.threads)
            .build()
            .map_err(|e| {
                Error::InvalidInput(format!("cannot start {} threads: {e}", plan.threads))
            })?;
        let threads = Arc::new(threads);
        run_options.executor = Some(tract_linalg::multithread::Executor::MultiThread(
            threads.clone(),
        ));
        pool = Some(threads);
    }
    let plan: Plan = optimized
        .into_runnable_with_options(&run_options)
        .map_err(|e| Error::inference(format!("{}: cannot plan", path.display()), e))?;
    let state = plan
        .spawn()
        .map_err(|e| Error::inference(format!("{}: cannot create state", path.display()), e))?;
    Ok(Runner {
        state,
        path: path.to_path_buf(),
        dim,
        pool,
    })
}

/// The CLIP image encoder with its preprocessing: images in, unnormalised embeddings out.
pub struct ImageEncoder {
    runner: Runner,
    preprocessor: Preprocessor,
    /// The input tensor, reused across calls while its shape fits.
    input: Option<Arc<Tensor>>,
    size: usize,
    precision: Precision,
}

impl ImageEncoder {
    /// Loads the bundle's image encoder of `options.precision` (default: int8 where the
    /// bundle has one, else fp32).
    pub fn load(bundle: &ModelBundle, options: EncoderOptions) -> Result<Self> {
        let m = &bundle.manifest;
        let s = m.image_size as i64;
        let precision = options
            .precision
            .unwrap_or_else(|| bundle.default_precision());
        let (spec, _) = bundle.image_encoder_graph(precision)?;
        let runner = load_runner(
            bundle,
            spec,
            f32::datum_type(),
            &[None, Some(3), Some(s), Some(s)],
            |symbols| {
                tvec!(
                    symbols.sym("N").to_dim(),
                    3.to_dim(),
                    s.to_dim(),
                    s.to_dim()
                )
            },
            m.embed_dim,
            PlanOptions {
                threads: options.threads,
                fusions: Fusions {
                    int8: precision == Precision::Int8
                        && bundle.int8_form() == Some(QuantForm::DynamicSymmetric),
                    transformer: true,
                },
            },
        )?;
        Ok(ImageEncoder {
            runner,
            precision,
            preprocessor: bundle.preprocessor(),
            input: None,
            size: m.image_size,
        })
    }

    pub fn embed_dim(&self) -> usize {
        self.runner.dim
    }

    /// The graph this encoder runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn image_size(&self) -> usize {
        self.size
    }

    /// The preprocessing [`encode`](Self::encode) applies; with
    /// [`encode_pixels`](Self::encode_pixels), the same result when run elsewhere (e.g. on
    /// another thread).
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    fn input_tensor(&mut self, n: usize) -> Arc<Tensor> {
        let shape = [n, 3, self.size, self.size];
        match self.input.take() {
            Some(t) if t.shape() == shape => t,
            _ => Arc::new(Tensor::zero::<f32>(&shape).expect("f32 tensor allocation")),
        }
    }

    /// Preprocesses and encodes a batch of images (one forward pass; with several threads,
    /// the images are preprocessed in parallel on them).
    pub fn encode(&mut self, images: &[RgbImage]) -> Result<Embeddings> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = self.input_tensor(images.len());
        {
            // Nobody else holds the tensor between runs (tract drops its values at the end
            // of each turn), so this is the reused buffer and no copy happens.
            let tensor = Arc::make_mut(&mut input);
            let mut view = tensor.try_as_plain_ram_mut().expect("plain f32 tensor");
            let values = view.as_slice_mut::<f32>().expect("f32 tensor");
            let len = self.preprocessor.tensor_len();
            match &self.runner.pool {
                // Several images: preprocessed in parallel on the encoder's own threads,
                // each by a copy of the preprocessor (the same exact arithmetic, so the
                // same values as one after the other).
                Some(pool) if images.len() > 1 => {
                    use rayon::prelude::*;
                    let preprocessor = &self.preprocessor;
                    pool.install(|| {
                        values
                            .par_chunks_exact_mut(len)
                            .zip(images.par_iter())
                            .for_each_init(
                                || preprocessor.clone(),
                                |p, (chunk, image)| p.preprocess_into(image, chunk),
                            )
                    });
                }
                _ => {
                    for (image, chunk) in images.iter().zip(values.chunks_exact_mut(len)) {
                        self.preprocessor.preprocess_into(image, chunk);
                    }
                }
            }
        }
        self.run(input)
    }

    /// Encodes already-preprocessed pixels, `n` images of 3*S*S values each (NCHW).
    pub fn encode_pixels(&mut self, pixels: &[f32]) -> Result<Embeddings> {
        let len = 3 * self.size * self.size;
        if pixels.is_empty() || !pixels.len().is_multiple_of(len) {
            return Err(Error::InvalidInput(format!(
                "pixel tensor of {} values is not a whole number of 3x{}x{} images",
                pixels.len(),
                self.size,
                self.size
            )));
        }
        let mut input = self.input_tensor(pixels.len() / len);
        {
            let tensor = Arc::make_mut(&mut input);
            let mut view = tensor.try_as_plain_ram_mut().expect("plain f32 tensor");
            view.as_slice_mut::<f32>()
                .expect("f32 tensor")
                .copy_from_slice(pixels);
        }
        self.run(input)
    }

    /// One forward pass over preprocessed pixels, timed per operator kind (benchmarking).
    pub fn profile_pixels(&mut self, pixels: &[f32]) -> Result<OpProfile> {
        let n = pixels.len() / (3 * self.size * self.size);
        let tensor = Tensor::from_shape(&[n, 3, self.size, self.size], pixels)
            .map_err(|e| Error::inference("image encoder input", e))?;
        self.runner.profile(tensor.into())
    }

    fn run(&mut self, input: Arc<Tensor>) -> Result<Embeddings> {
        let result = self.runner.run(TValue::from_const(input.clone()));
        self.input = Some(input);
        result
    }
}

/// The text encoder: token ids in, unnormalised embeddings out. Pads as the bundle's text
/// spec says: a CLIP text tower runs each batch at its longest real token length, not the
/// full context (it is causal and pools at the first end-of-text token, so the tokens
/// after it never matter); towers that attend to padding or pool the last position
/// (MobileCLIP's S models, SigLIP) get the full context of pad ids.
pub struct TextEncoder {
    runner: Runner,
    context_length: usize,
    spec: TextSpec,
}

impl TextEncoder {
    pub fn load(bundle: &ModelBundle, options: EncoderOptions) -> Result<Self> {
        let m = &bundle.manifest;
        let runner = load_runner(
            bundle,
            &m.files.text_encoder,
            i64::datum_type(),
            &[None, None],
            |symbols| tvec!(symbols.sym("N").to_dim(), symbols.sym("L").to_dim()),
            m.embed_dim,
            PlanOptions {
                threads: options.threads,
                fusions: Fusions {
                    int8: false,
                    transformer: true,
                },
            },
        )?;
        Ok(TextEncoder {
            runner,
            context_length: m.context_length,
            spec: bundle.spec().text,
        })
    }

    pub fn embed_dim(&self) -> usize {
        self.runner.dim
    }

    /// Encodes token id sequences (as the bundle's tokenizer makes them), padded with the
    /// bundle's pad id to the batch's longest sequence or the context, as its text spec
    /// says (or to `pad_to`, if larger).
    pub fn encode_ids(&mut self, ids: &[Vec<u32>], pad_to: Option<usize>) -> Result<Embeddings> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let tensor = self.ids_tensor(ids, pad_to)?;
        self.runner.run(tensor.into())
    }

    /// One forward pass over `ids` (as [`Self::encode_ids`] runs them), timed per operator
    /// kind (benchmarking).
    pub fn profile_ids(&mut self, ids: &[Vec<u32>], pad_to: Option<usize>) -> Result<OpProfile> {
        let tensor = self.ids_tensor(ids, pad_to)?;
        self.runner.profile(tensor.into())
    }

    /// The [batch, length] int64 input of non-empty `ids`.
    fn ids_tensor(&self, ids: &[Vec<u32>], pad_to: Option<usize>) -> Result<Tensor> {
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        if longest == 0 || longest > self.context_length {
            return Err(Error::InvalidInput(format!(
                "token sequences of length {longest} do not fit the context of {} tokens",
                self.context_length
            )));
        }
        let len = self
            .spec
            .padded_length(longest, self.context_length)
            .max(longest)
            .max(pad_to.unwrap_or(0))
            .min(self.context_length);
        let mut flat = vec![i64::from(self.spec.pad_id); ids.len() * len];
        for (row, seq) in flat.chunks_exact_mut(len).zip(ids) {
            for (dst, &id) in row.iter_mut().zip(seq) {
                *dst = i64::from(id);
            }
        }
        Tensor::from_shape(&[ids.len(), len], &flat)
            .map_err(|e| Error::inference("text encoder input", e))
    }
}
