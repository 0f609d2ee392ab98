//! `info`: a bundle's manifest, family (preprocessing, tokenizer, pooling, scoring),
//! graph inputs and outputs, file sizes and the precision that runs by default.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::ModelArgs;

#[derive(Args)]
pub struct InfoArgs {
    /// Bundle folder (the same as --model; default: the default model lookup).
    #[arg(conflicts_with = "model")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn info(args: InfoArgs, out: &mut impl Write) -> Result<()> {
    let json_out = args.json;
    let options = ModelArgs {
        model: args.dir.or(args.model.model),
        ..args.model
    };
    let builder = options.open()?;
    let bundle = builder.bundle();
    // Opening checks that the files exist; each load checks the bytes it reads. `info`
    // checks every file, the graphs this machine would not load included.
    bundle.verify_checksums()?;
    let m = &bundle.manifest;
    let spec = bundle.spec();
    let size = |p: PathBuf| std::fs::metadata(&p).map(|md| md.len()).unwrap_or(0);
    let mut files = vec![
        (
            "image_encoder",
            bundle.image_encoder_path(),
            Some(&m.files.image_encoder),
        ),
        (
            "text_encoder",
            bundle.text_encoder_path(),
            Some(&m.files.text_encoder),
        ),
        ("tokenizer", bundle.tokenizer_path(), None),
    ];
    if let Some(g) = &m.files.image_encoder_int8 {
        files.insert(1, ("image_encoder_int8", bundle.dir.join(&g.path), Some(g)));
    }
    let int8_form = bundle.int8_form().map(|f| f.name());
    if json_out {
        let files: Vec<_> = files
            .iter()
            .map(|(role, path, graph)| {
                json!({
                    "role": role,
                    "path": path.display().to_string(),
                    "bytes": size(path.clone()),
                    "input": graph.map(|g| g.input.clone()),
                    "output": graph.map(|g| g.output.clone()),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            json!({
                "name": m.name,
                "source": {"kind": m.source.kind, "checkpoint": m.source.checkpoint, "seed": m.source.seed},
                "embed_dim": m.embed_dim,
                "image_size": m.image_size,
                "image_mean": m.image_mean,
                "image_std": m.image_std,
                "logit_scale": m.logit_scale,
                "context_length": m.context_length,
                "format_version": m.format_version,
                "family": spec.family.name(),
                "preprocess": spec.preprocess.describe(),
                "text": spec.text.describe(),
                "scoring": spec.scoring.describe(),
                "manifest_sha256": bundle.manifest_sha256,
                "files": files,
                "int8_form": int8_form,
                "default_precision": bundle.default_precision().name(),
            })
        )?;
    } else {
        writeln!(out, "bundle        {}", bundle.dir.display())?;
        writeln!(out, "name          {}", m.name)?;
        writeln!(
            out,
            "source        {} {} (seed {:?})",
            m.source.kind, m.source.checkpoint, m.source.seed
        )?;
        writeln!(out, "embed_dim     {}", m.embed_dim)?;
        writeln!(
            out,
            "image         {0}x{0}, mean {1:?}, std {2:?}",
            m.image_size, m.image_mean, m.image_std
        )?;
        writeln!(out, "logit_scale   {}", m.logit_scale)?;
        writeln!(out, "context       {} tokens", m.context_length)?;
        writeln!(
            out,
            "family        {} (format {})",
            spec.family.name(),
            m.format_version
        )?;
        writeln!(out, "preprocess    {}", spec.preprocess.describe())?;
        writeln!(out, "text          {}", spec.text.describe())?;
        writeln!(out, "scoring       {}", spec.scoring.describe())?;
        for (role, path, graph) in &files {
            let io = graph.map(|g| {
                format!(
                    "  {} [N,3,{s},{s}] -> {} [N,{}]",
                    g.input,
                    g.output,
                    m.embed_dim,
                    s = m.image_size
                )
            });
            let io = match (role, graph) {
                (&"text_encoder", Some(g)) => format!(
                    "  {} [N,L] int64 -> {} [N,{}]",
                    g.input, g.output, m.embed_dim
                ),
                _ => io.unwrap_or_default(),
            };
            writeln!(
                out,
                "{role:<13} {} ({} bytes){io}",
                path.display(),
                size(path.clone())
            )?;
        }
        writeln!(
            out,
            "precision     {} by default{}",
            bundle.default_precision(),
            int8_form
                .map(|f| format!(" (int8 form: {f})"))
                .unwrap_or_default()
        )?;
        writeln!(out, "checksums     ok")?;
    }
    Ok(())
}
