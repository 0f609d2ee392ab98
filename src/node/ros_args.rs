//! The ROS 2 command line, as `ros2 run` and `ros2 launch` pass it: everything between
//! `--ros-args` and `--` (or the end): `-r/--remap [node:]from:=to` (including `__node:=`,
//! `__name:=` and `__ns:=`), `-p/--param [node:]name:=value`, `--params-file FILE` and
//! `--log-level [logger:=]LEVEL`. Flags rcl knows but this node does not use, and anything
//! unknown, become warnings: the node starts anyway, as a ROS node must under launch.

use std::path::{Path, PathBuf};

use crate::precision::Precision;

/// One `-r [node:]from:=to` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    /// Applies only to the node of this name (`None`: to every node).
    pub node: Option<String>,
    pub from: String,
    pub to: String,
}

/// One `-p [node:]name:=value` override; the value is YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamOverride {
    pub node: Option<String>,
    pub name: String,
    pub value: String,
}

/// Values set over a params file's (`None`: the file's value stands): `labels` as one
/// `;`-separated list, the bundle folder, threads and precision.
#[derive(Debug, Clone, Default)]
pub struct ParamOverrides {
    pub labels: Option<String>,
    pub model_dir: Option<PathBuf>,
    pub threads: Option<usize>,
    pub precision: Option<Precision>,
}

/// What the ROS arguments of one process say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosArgs {
    /// Topic remapping rules, in command-line order (the first match wins).
    pub remaps: Vec<Remap>,
    /// `__node:=` / `__name:=` rules (the last one for this node wins).
    pub node_names: Vec<(Option<String>, String)>,
    /// `__ns:=` rules.
    pub namespaces: Vec<(Option<String>, String)>,
    /// `--params-file` arguments, in order (later files override earlier ones).
    pub params_files: Vec<PathBuf>,
    /// `-p` overrides, applied after every params file.
    pub params: Vec<ParamOverride>,
    /// `--log-level LEVEL` or `--log-level logger:=LEVEL`, as given.
    pub log_levels: Vec<String>,
    /// Arguments outside `--ros-args` sections.
    pub user_args: Vec<String>,
    /// What was ignored, one line each, for the log.
    pub warnings: Vec<String>,
}

/// A ROS argument that is malformed (not merely unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ROS argument {flag}: {message}")]
pub struct RosArgsError {
    pub flag: String,
    pub message: String,
}

/// Splits `[node:]name:=value`; a `:` before the `:=` separates the node prefix.
fn split_assignment(text: &str) -> Option<(Option<String>, String, String)> {
    let (lhs, value) = text.split_once(":=")?;
    let (node, name) = match lhs.split_once(':') {
        Some((node, name)) => (Some(node.to_string()), name.to_string()),
        None => (None, lhs.to_string()),
    };
    if name.is_empty() {
        return None;
    }
    Some((node, name, value.to_string()))
}

/// rcl flags this node accepts and ignores; the value says whether one argument follows.
const IGNORED_FLAGS: &[(&str, bool)] = &[
    ("-e", true),
    ("--enclave", true),
    ("--log-file-name", true),
    ("--log-config-file", true),
    ("--enable-rosout-logs", false),
    ("--disable-rosout-logs", false),
    ("--enable-stdout-logs", false),
    ("--disable-stdout-logs", false),
    ("--enable-external-lib-logs", false),
    ("--disable-external-lib-logs", false),
];

impl RosArgs {
    /// The node's command line for a params file and `-p name:=value` overrides (values
    /// written as JSON, which ROS parameter syntax reads as YAML): what offline callers
    /// (replay, benchmarks) hand to the node's own parameter loading and validation.
    pub fn for_params(
        params_file: Option<&std::path::Path>,
        overrides: &[(&str, serde_json::Value)],
    ) -> Result<RosArgs, RosArgsError> {
        let mut argv = vec!["--ros-args".to_string()];
        if let Some(file) = params_file {
            argv.extend(["--params-file".to_string(), file.display().to_string()]);
        }
        for (name, value) in overrides {
            argv.extend(["-p".to_string(), format!("{name}:={value}")]);
        }
        RosArgs::parse(argv)
    }

    /// [`RosArgs::for_params`] with the engine and phrase settings that offline callers
    /// (replay, its benchmark) let a user set over the params file.
    pub fn with_overrides(
        params_file: Option<&Path>,
        overrides: &ParamOverrides,
    ) -> Result<RosArgs, RosArgsError> {
        let mut values = Vec::new();
        if let Some(labels) = &overrides.labels {
            values.push(("labels", serde_json::json!([labels])));
        }
        if let Some(model) = &overrides.model_dir {
            values.push(("model_dir", serde_json::json!(model.display().to_string())));
        }
        if let Some(threads) = overrides.threads {
            values.push(("threads", serde_json::json!(threads)));
        }
        if let Some(precision) = overrides.precision {
            values.push(("precision", serde_json::json!(precision.name())));
        }
        Self::for_params(params_file, &values)
    }

    /// Parses a process's arguments (without the program name).
    pub fn parse<I, S>(args: I) -> Result<RosArgs, RosArgsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = RosArgs::default();
        let mut args = args.into_iter().map(Into::<String>::into);
        let mut in_ros_args = false;
        while let Some(arg) = args.next() {
            if arg == "--ros-args" {
                in_ros_args = true;
                continue;
            }
            if !in_ros_args {
                out.user_args.push(arg);
                continue;
            }
            if arg == "--" {
                in_ros_args = false;
                continue;
            }
            let mut value_of = |flag: &str| {
                args.next().ok_or_else(|| RosArgsError {
                    flag: flag.to_string(),
                    message: "needs a value".into(),
                })
            };
            match arg.as_str() {
                "-r" | "--remap" => {
                    let rule = value_of(&arg)?;
                    let (node, from, to) = split_assignment(&rule).ok_or_else(|| RosArgsError {
                        flag: arg.clone(),
                        message: format!("{rule:?} is not `from:=to`"),
                    })?;
                    match from.as_str() {
                        "__node" | "__name" => out.node_names.push((node, to)),
                        "__ns" => out.namespaces.push((node, to)),
                        _ => out.remaps.push(Remap { node, from, to }),
                    }
                }
                "-p" | "--param" => {
                    let rule = value_of(&arg)?;
                    let (node, name, value) =
                        split_assignment(&rule).ok_or_else(|| RosArgsError {
                            flag: arg.clone(),
                            message: format!("{rule:?} is not `name:=value`"),
                        })?;
                    out.params.push(ParamOverride { node, name, value });
                }
                "--params-file" => out.params_files.push(PathBuf::from(value_of(&arg)?)),
                "--log-level" => out.log_levels.push(value_of(&arg)?),
                other => match IGNORED_FLAGS.iter().find(|(flag, _)| *flag == other) {
                    Some((flag, takes_value)) => {
                        if *takes_value {
                            value_of(flag)?;
                        }
                        out.warnings.push(format!(
                            "ROS argument {flag} is not supported by this node; ignored"
                        ));
                    }
                    None => out
                        .warnings
                        .push(format!("unknown ROS argument {other:?}; ignored")),
                },
            }
        }
        for arg in &out.user_args {
            out.warnings.push(format!(
                "unknown argument {arg:?} (not after --ros-args); ignored"
            ));
        }
        Ok(out)
    }

    /// The node's name: the last `__node:=` rule for this node (or for every node), else `default`.
    pub fn node_name(&self, default: &str) -> String {
        Self::last_for(&self.node_names, default).unwrap_or_else(|| default.to_string())
    }

    /// The node's namespace: the last `__ns:=` rule for the node called `node` (matched
    /// against its original name), else `/`; made absolute if given relative.
    pub fn namespace(&self, node: &str) -> String {
        let ns = Self::last_for(&self.namespaces, node).unwrap_or_else(|| "/".to_string());
        if ns.starts_with('/') {
            ns
        } else {
            format!("/{ns}")
        }
    }

    fn last_for(rules: &[(Option<String>, String)], node: &str) -> Option<String> {
        rules
            .iter()
            .rev()
            .find(|(n, _)| n.as_deref().is_none_or(|n| n == node))
            .map(|(_, v)| v.clone())
    }

    /// The log filter the `--log-level` arguments ask for (`env_logger` syntax): a plain
    /// level sets every logger's; `name:=level` sets that logger (the node's own name maps
    /// to this crate).
    pub fn log_filter(&self, node_name: &str) -> Option<String> {
        if self.log_levels.is_empty() {
            return None;
        }
        let level = |l: &str| match l.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_string(),
            "warn" | "warning" => "warn".to_string(),
            other => other.to_string(),
        };
        let parts: Vec<String> = self
            .log_levels
            .iter()
            .map(|entry| match entry.split_once(":=") {
                Some((logger, l)) if logger == node_name => format!("clip_perception={}", level(l)),
                Some((logger, l)) => format!("{logger}={}", level(l)),
                // A plain level is every logger's, the node's own included.
                None => format!("{l},clip_perception={l},clip_node={l}", l = level(entry)),
            })
            .collect();
        Some(parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_ros2_launch_passes() {
        let args = RosArgs::parse([
            "--ros-args",
            "-r",
            "__node:=clip",
            "-r",
            "__ns:=/robot1",
            "--params-file",
            "/tmp/a.yaml",
            "--params-file",
            "/tmp/b.yaml",
            "-r",
            "image:=/camera/image_raw",
            "-p",
            "top_k:=2",
            "--remap",
            "clip:~/query:=/task",
            "-p",
            "clip:labels:=[a, b]",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(args.node_name("clip_node"), "clip");
        assert_eq!(args.namespace("clip_node"), "/robot1");
        assert_eq!(
            args.params_files,
            vec![PathBuf::from("/tmp/a.yaml"), PathBuf::from("/tmp/b.yaml")]
        );
        assert_eq!(
            args.remaps,
            vec![
                Remap {
                    node: None,
                    from: "image".into(),
                    to: "/camera/image_raw".into()
                },
                Remap {
                    node: Some("clip".into()),
                    from: "~/query".into(),
                    to: "/task".into()
                },
            ]
        );
        assert_eq!(
            args.params[0],
            ParamOverride {
                node: None,
                name: "top_k".into(),
                value: "2".into()
            }
        );
        assert_eq!(args.params[1].node.as_deref(), Some("clip"));
        assert_eq!(args.params[1].value, "[a, b]");
        assert_eq!(
            args.log_filter("clip").as_deref(),
            Some("debug,clip_perception=debug,clip_node=debug")
        );
        assert!(args.warnings.is_empty(), "{:?}", args.warnings);
    }

    #[test]
    fn unknown_arguments_are_warnings_malformed_ones_errors() {
        let args = RosArgs::parse([
            "extra",
            "--ros-args",
            "--enclave",
            "/e",
            "--frobnicate",
            "--",
            "tail",
        ])
        .unwrap();
        assert_eq!(args.user_args, vec!["extra", "tail"]);
        assert_eq!(args.warnings.len(), 4, "{:?}", args.warnings);
        assert!(args.warnings.iter().any(|w| w.contains("--frobnicate")));
        assert_eq!(args.node_name("clip_node"), "clip_node");
        assert_eq!(args.namespace("clip_node"), "/");
        assert!(RosArgs::parse(["--ros-args", "-r"]).is_err());
        assert!(RosArgs::parse(["--ros-args", "-r", "image"]).is_err());
        assert!(RosArgs::parse(["--ros-args", "-p", ":=3"]).is_err());
    }

    #[test]
    fn node_specific_rules_and_relative_namespace() {
        let args = RosArgs::parse([
            "--ros-args",
            "-r",
            "other:__ns:=/x",
            "-r",
            "__ns:=robot",
            "-r",
            "other:__node:=y",
        ])
        .unwrap();
        assert_eq!(args.namespace("clip_node"), "/robot");
        assert_eq!(args.namespace("other"), "/robot");
        assert_eq!(args.node_name("clip_node"), "clip_node");
        assert_eq!(args.node_name("other"), "y");
        let args = RosArgs::parse([
            "--ros-args",
            "--log-level",
            "clip:=WARN",
            "--log-level",
            "rustdds:=error",
        ])
        .unwrap();
        assert_eq!(
            args.log_filter("clip").as_deref(),
            Some("clip_perception=warn,rustdds=error")
        );
    }
}
