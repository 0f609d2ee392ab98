//! The integration tests, one binary with a module per stage. Each numeric stage is compared
//! with an independent reference on identical inputs; the references were produced by the
//! Python scripts committed next to their data under `tests/data/` (see each module).

mod bundle;
mod cli;
mod common;
mod embeddings;
mod eval;
mod families;
mod fuzz_corpus;
mod index;
mod layers;
mod layout;
mod locate;
#[cfg(feature = "dds")]
mod node;
mod node_core;
mod preprocess;
mod replay;
mod tabletop;
mod text_clean;
mod tokenizer;
mod zeroshot;
