//! The text side before the encoder: OpenAI CLIP's text cleaning ([`clean`]) and CLIP
//! tokenization on a Hugging Face `tokenizer.json` ([`tokenizer`]).

pub mod clean;
mod ftfy_tables;
mod html_entities;
mod python_str_tables;
pub mod tokenizer;
