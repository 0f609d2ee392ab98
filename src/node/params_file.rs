//! Where parameter values come from: the defaults, then each `--params-file` (ROS format:
//! `node_key: ros__parameters: {name: value}`, node keys matched against the node's fully
//! qualified name with `*` and `**` wildcards, nested maps flattened with `.`), then the
//! `-p name:=value` overrides. Unknown names are warnings, wrong types are errors.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::names::NodeNames;
use super::params::{canonical_name, NodeParams, ParamError};
use super::ros_args::RosArgs;
use crate::config::parse_yaml;

/// Why the parameters could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--params-file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("-p {name}:={value}: {message}")]
    Override {
        name: String,
        value: String,
        message: String,
    },
    #[error("{source} (from {origin})")]
    Param {
        #[source]
        source: ParamError,
        origin: String,
    },
}

/// Does a params-file node key (`clip_node`, `/ns/clip_node`, `/**`, `/**/clip_node`,
/// `/ns/*`) name the node `fqn`?
pub fn node_key_matches(key: &str, fqn: &str) -> bool {
    let key = key.strip_prefix('/').unwrap_or(key);
    let pattern: Vec<&str> = key.split('/').filter(|t| !t.is_empty()).collect();
    let name: Vec<&str> = fqn.split('/').filter(|t| !t.is_empty()).collect();
    fn matches(p: &[&str], n: &[&str]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((&"**", rest)) => (0..=n.len()).any(|skip| matches(rest, &n[skip..])),
            Some((&"*", rest)) => !n.is_empty() && matches(rest, &n[1..]),
            Some((token, rest)) => n.first() == Some(token) && matches(rest, &n[1..]),
        }
    }
    matches(&pattern, &name)
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// The `(name, value)` pairs a params file holds for the node `fqn`: entries under
/// wildcard keys first, then under keys without wildcards, each group in file order.
pub fn params_for_node(path: &Path, fqn: &str) -> Result<Vec<(String, Value)>, LoadError> {
    let file_error = |message: String| LoadError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = crate::config::read_text_limited(
        path,
        crate::config::limits::CONFIG_BYTES,
        "a params file",
    )
    .map_err(|e| file_error(format!("cannot read: {e}")))?;
    let doc: Value = parse_yaml(&text, path).map_err(|e| file_error(e.to_string()))?;
    let Value::Object(nodes) = doc else {
        return Err(file_error(
            "expected a map of node names (e.g. `clip_node: {ros__parameters: {...}}`)".into(),
        ));
    };
    let mut matching: Vec<(&String, &Value)> = nodes
        .iter()
        .filter(|(key, _)| node_key_matches(key, fqn))
        .collect();
    matching.sort_by_key(|(key, _)| !key.contains('*'));
    let mut out = Vec::new();
    for (key, body) in matching {
        match body.get("ros__parameters") {
            Some(params @ Value::Object(_)) => flatten("", params, &mut out),
            _ => {
                return Err(file_error(format!(
                    "node entry `{key}` has no `ros__parameters` map"
                )));
            }
        }
    }
    Ok(out)
}

/// The node's parameters from the defaults, the params files and the `-p` overrides;
/// also the warnings about parameters this node does not have.
pub fn load_params(
    args: &RosArgs,
    names: &NodeNames,
    default_name: &str,
) -> Result<(NodeParams, Vec<String>), LoadError> {
    let fqn = names.fully_qualified();
    let mut params = NodeParams::default();
    let mut warnings = Vec::new();
    for path in &args.params_files {
        for (name, value) in params_for_node(path, &fqn)? {
            let (name, renamed) = canonical_name(&name);
            warnings.extend(renamed.map(|w| format!("{}: {w}", path.display())));
            let known = params
                .set(name, &value)
                .map_err(|source| LoadError::Param {
                    source,
                    origin: format!("--params-file {}", path.display()),
                })?;
            if !known {
                warnings.push(format!(
                    "{}: unknown parameter `{name}` ignored",
                    path.display()
                ));
            }
        }
    }
    for p in &args.params {
        if p.node
            .as_deref()
            .is_some_and(|n| n != names.name && n != default_name)
        {
            continue;
        }
        let value: Value =
            parse_yaml(&p.value, Path::new("-p")).map_err(|e| LoadError::Override {
                name: p.name.clone(),
                value: p.value.clone(),
                message: e.to_string(),
            })?;
        // YAML reads an empty value as null; ROS reads it as an empty string.
        let value = if value.is_null() {
            Value::String(String::new())
        } else {
            value
        };
        let (name, renamed) = canonical_name(&p.name);
        warnings.extend(renamed.map(|w| format!("-p {}: {w}", p.name)));
        let known = params
            .set(name, &value)
            .map_err(|source| LoadError::Param {
                source,
                origin: format!("-p {}:={}", p.name, p.value),
            })?;
        if !known {
            warnings.push(format!("-p {}: unknown parameter ignored", p.name));
        }
    }
    Ok((params, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_keys_like_rcl() {
        assert!(node_key_matches("clip_node", "/clip_node"));
        assert!(node_key_matches("/clip_node", "/clip_node"));
        assert!(!node_key_matches("clip_node", "/robot/clip_node"));
        assert!(node_key_matches("/robot/clip_node", "/robot/clip_node"));
        assert!(node_key_matches("robot/clip_node", "/robot/clip_node"));
        assert!(node_key_matches("/**", "/robot/arm/clip_node"));
        assert!(node_key_matches("/**/clip_node", "/clip_node"));
        assert!(node_key_matches("/**/clip_node", "/robot/arm/clip_node"));
        assert!(!node_key_matches("/**/clip_node", "/robot/other"));
        assert!(node_key_matches("/robot/*", "/robot/clip_node"));
        assert!(!node_key_matches("/*", "/robot/clip_node"));
    }

    #[test]
    fn files_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            "/robot/clip_node:\n  ros__parameters:\n    top_k: 3\n    extra: {a: 1}\n\
             /**:\n  ros__parameters:\n    top_k: 9\n    threshold: 0.5\n\
             other_node:\n  ros__parameters:\n    top_k: 7\n",
        )
        .unwrap();
        let args = RosArgs::parse([
            "--ros-args",
            "-r",
            "__ns:=/robot",
            "--params-file",
            file.to_str().unwrap(),
            "-p",
            "labels:=a; b",
            "-p",
            "other:top_k:=1",
            "-p",
            "cache_dir:=",
        ])
        .unwrap();
        let names = NodeNames::new("clip_node", &args).unwrap();
        let (params, warnings) = load_params(&args, &names, "clip_node").unwrap();
        assert_eq!(params.top_k, 3, "the node's own key beats the wildcard");
        assert_eq!(params.threshold, 0.5);
        assert_eq!(params.labels, vec!["a; b"]);
        assert_eq!(params.cache_dir, "");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("extra.a"));
        let args = RosArgs::parse(["--ros-args", "-p", "input:=compressed"]).unwrap();
        let (params, warnings) = load_params(&args, &names, "clip_node").unwrap();
        assert_eq!(
            params.image_transport, "compressed",
            "the old name still works"
        );
        assert!(
            warnings[0].contains("now called `image_transport`"),
            "{warnings:?}"
        );
    }

    #[test]
    fn errors_name_the_file_or_parameter() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            "clip_node:\n  ros__parameters:\n    threshold: high\n",
        )
        .unwrap();
        let args = RosArgs::parse(["--ros-args", "--params-file", file.to_str().unwrap()]).unwrap();
        let names = NodeNames::new("clip_node", &args).unwrap();
        let err = load_params(&args, &names, "clip_node")
            .unwrap_err()
            .to_string();
        assert!(err.contains("threshold") && err.contains("p.yaml"), "{err}");
        let args = RosArgs::parse(["--ros-args", "--params-file", "/no/such.yaml"]).unwrap();
        let err = load_params(&args, &names, "clip_node")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such.yaml"), "{err}");
    }
}
