//! Prompt templates and ensembles: how a phrase becomes the texts the encoder embeds
//! ("a photo of a {}."), one template or the CLIP paper's ensembles ([`prompt_sets`]).

use std::path::Path;

use super::prompt_sets;

/// The template CLIP's paper uses for single-prompt zero-shot classification.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

pub use crate::error::text::PromptError;

/// The prompt templates a phrase is embedded with: one template, or an ensemble whose
/// normalised embeddings are averaged and renormalised, as in the CLIP paper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompts {
    name: String,
    templates: Vec<String>,
}

impl Prompts {
    /// The one place that decides between a template and an ensemble: the ensemble where
    /// one is named, else the template, else [`DEFAULT_TEMPLATE`].
    pub fn choose(template: Option<&str>, ensemble: Option<&str>) -> Result<Self, PromptError> {
        match (ensemble, template) {
            (Some(e), _) => Self::ensemble(e),
            (None, Some(t)) => Self::single(t),
            (None, None) => Self::single(DEFAULT_TEMPLATE),
        }
    }

    /// One template containing `{}` where the phrase goes.
    pub fn single(template: &str) -> Result<Self, PromptError> {
        Self::new(template.to_string(), vec![template.to_string()])
    }

    /// A built-in ensemble (`imagenet`, `cifar10`) or a file with one template per line
    /// (blank lines and lines starting with `#` are skipped).
    pub fn ensemble(name_or_file: &str) -> Result<Self, PromptError> {
        let builtin = match name_or_file {
            "imagenet" => Some(prompt_sets::IMAGENET),
            "cifar10" => Some(prompt_sets::CIFAR10),
            _ => None,
        };
        if let Some(set) = builtin {
            return Self::new(
                name_or_file.to_string(),
                set.iter().map(|s| s.to_string()).collect(),
            );
        }
        let path = Path::new(name_or_file);
        let text = crate::config::read_text_limited(
            path,
            crate::config::limits::CONFIG_BYTES,
            "a template file",
        )
        .map_err(|cause| {
            if cause.kind() == std::io::ErrorKind::NotFound {
                PromptError::UnknownEnsemble(name_or_file.to_string())
            } else {
                PromptError::Read {
                    path: path.to_path_buf(),
                    cause,
                }
            }
        })?;
        let templates: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        if templates.is_empty() {
            return Err(PromptError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        Self::new(name_or_file.to_string(), templates)
    }

    fn new(name: String, templates: Vec<String>) -> Result<Self, PromptError> {
        if let Some(bad) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(PromptError::NoPlaceholder(bad.clone()));
        }
        Ok(Prompts { name, templates })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn templates(&self) -> &[String] {
        &self.templates
    }
}

impl Default for Prompts {
    fn default() -> Self {
        Prompts::single(DEFAULT_TEMPLATE).expect("the default template has a placeholder")
    }
}

/// Fills a template's `{}` with a phrase.
pub fn fill_template(template: &str, phrase: &str) -> String {
    template.replace("{}", phrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_need_a_placeholder() {
        assert!(Prompts::single("a photo of a cup").is_err());
        assert_eq!(Prompts::ensemble("imagenet").unwrap().templates().len(), 80);
        assert_eq!(Prompts::ensemble("cifar10").unwrap().templates().len(), 18);
        assert!(Prompts::ensemble("no-such-set").is_err());
        assert_eq!(
            fill_template("a photo of a {}.", "red cup"),
            "a photo of a red cup."
        );
    }

    #[test]
    fn ensemble_wins_over_template() {
        let chosen = |t, e| Prompts::choose(t, e).unwrap().name().to_string();
        assert_eq!(chosen(None, None), DEFAULT_TEMPLATE);
        assert_eq!(chosen(Some("a {}"), None), "a {}");
        assert_eq!(chosen(Some("a {}"), Some("cifar10")), "cifar10");
    }
}
