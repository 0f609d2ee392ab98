//! ROS 2 name resolution for the node's topics: relative names (`image`) go under the node's
//! namespace, private names (`~/query`) under the node's fully qualified name, absolute
//! names (`/diagnostics`) stay; then the first matching `from:=to` remap rule replaces the
//! result (both sides expanded the same way, as rcl does).

use super::ros_args::{Remap, RosArgs};

/// A name that is not a valid ROS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?} is not a valid ROS name: {message}")]
pub struct NameError {
    pub what: &'static str,
    pub name: String,
    pub message: String,
}

fn check_token(token: &str) -> Result<(), String> {
    let mut chars = token.chars();
    match chars.next() {
        None => return Err("empty token (double or trailing slash)".into()),
        Some(c) if c.is_ascii_digit() => {
            return Err(format!("token {token:?} starts with a digit"))
        }
        _ => {}
    }
    if let Some(c) = token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "character {c:?} (allowed: letters, digits, `_`, `/`)"
        ));
    }
    if token.contains("__") {
        return Err(format!("token {token:?} has a double underscore"));
    }
    Ok(())
}

/// Checks a camera name of the `cameras` parameter: one ROS name token (it becomes a
/// topic name's segment: `C/image`, `~/C/classification`).
pub fn check_camera_name(name: &str) -> Result<(), NameError> {
    let error = |message: String| NameError {
        what: "camera",
        name: name.to_string(),
        message,
    };
    if name.contains('/') {
        return Err(error(
            "character '/' (a camera name is one token: letters, digits, `_`)".into(),
        ));
    }
    check_token(name).map_err(|m| error(m.replace(", `/`", "")))
}

/// The node's name, namespace and remapping rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNames {
    /// The node's base name (after `__node:=`).
    pub name: String,
    /// Absolute namespace, `/` at the root, no trailing slash otherwise.
    pub namespace: String,
    remaps: Vec<Remap>,
}

impl NodeNames {
    /// The names of a node called `default_name` in its code, under `args`.
    pub fn new(default_name: &str, args: &RosArgs) -> Result<NodeNames, NameError> {
        let name = args.node_name(default_name);
        check_token(&name).map_err(|message| NameError {
            what: "node name",
            name: name.clone(),
            message,
        })?;
        let mut namespace = args.namespace(default_name);
        if namespace.len() > 1 && namespace.ends_with('/') {
            namespace.pop();
        }
        if namespace != "/" {
            for token in namespace[1..].split('/') {
                check_token(token).map_err(|message| NameError {
                    what: "namespace",
                    name: namespace.clone(),
                    message,
                })?;
            }
        }
        let remaps = args
            .remaps
            .iter()
            .filter(|r| {
                r.node
                    .as_deref()
                    .is_none_or(|n| n == name || n == default_name)
            })
            .cloned()
            .collect();
        Ok(NodeNames {
            name,
            namespace,
            remaps,
        })
    }

    /// `/namespace/name`.
    pub fn fully_qualified(&self) -> String {
        self.expand("~").expect("the node's own name is valid")
    }

    /// Expands a topic name as written in the code or a remap rule to an absolute name.
    pub fn expand(&self, name: &str) -> Result<String, NameError> {
        let ns = if self.namespace == "/" {
            ""
        } else {
            self.namespace.as_str()
        };
        let full = if name == "~" {
            format!("{ns}/{}", self.name)
        } else if let Some(rest) = name.strip_prefix("~/") {
            format!("{ns}/{}/{rest}", self.name)
        } else if name.starts_with('/') {
            name.to_string()
        } else {
            format!("{ns}/{name}")
        };
        for token in full[1..].split('/') {
            check_token(token).map_err(|message| NameError {
                what: "topic name",
                name: name.to_string(),
                message,
            })?;
        }
        Ok(full)
    }

    /// The absolute topic name a name in the code resolves to, after remapping.
    pub fn resolve_topic(&self, name: &str) -> Result<String, NameError> {
        let expanded = self.expand(name)?;
        for rule in &self.remaps {
            if self.expand(&rule.from)? == expanded {
                return self.expand(&rule.to);
            }
        }
        Ok(expanded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(args: &[&str]) -> NodeNames {
        NodeNames::new("clip_node", &RosArgs::parse(args.iter().copied()).unwrap()).unwrap()
    }

    #[test]
    fn relative_private_absolute() {
        let n = names(&[]);
        assert_eq!(n.fully_qualified(), "/clip_node");
        assert_eq!(n.resolve_topic("image").unwrap(), "/image");
        assert_eq!(
            n.resolve_topic("image/compressed").unwrap(),
            "/image/compressed"
        );
        assert_eq!(n.resolve_topic("~/query").unwrap(), "/clip_node/query");
        assert_eq!(n.resolve_topic("/diagnostics").unwrap(), "/diagnostics");

        let n = names(&[
            "--ros-args",
            "-r",
            "__ns:=/robot1/arm",
            "-r",
            "__node:=clip",
        ]);
        assert_eq!(n.fully_qualified(), "/robot1/arm/clip");
        assert_eq!(n.resolve_topic("image").unwrap(), "/robot1/arm/image");
        assert_eq!(
            n.resolve_topic("~/classification").unwrap(),
            "/robot1/arm/clip/classification"
        );
        assert_eq!(n.resolve_topic("/diagnostics").unwrap(), "/diagnostics");
    }

    #[test]
    fn remaps_expand_both_sides_and_first_match_wins() {
        let n = names(&[
            "--ros-args",
            "-r",
            "__ns:=/robot1",
            "-r",
            "image:=camera/color/image_raw",
            "-r",
            "image:=/ignored",
            "-r",
            "~/query:=/task/phrases",
            "-r",
            "/diagnostics:=diag",
            "-r",
            "other:image/compressed:=/nope",
        ]);
        assert_eq!(
            n.resolve_topic("image").unwrap(),
            "/robot1/camera/color/image_raw"
        );
        assert_eq!(n.resolve_topic("~/query").unwrap(), "/task/phrases");
        assert_eq!(n.resolve_topic("/diagnostics").unwrap(), "/robot1/diag");
        assert_eq!(
            n.resolve_topic("image/compressed").unwrap(),
            "/robot1/image/compressed"
        );
        // A rule written with the absolute name matches the relative name in the code.
        let n = names(&["--ros-args", "-r", "__ns:=/r", "-r", "/r/image:=/cam"]);
        assert_eq!(n.resolve_topic("image").unwrap(), "/cam");
    }

    #[test]
    fn invalid_names_are_errors() {
        let bad = |args: &[&str]| {
            NodeNames::new("clip_node", &RosArgs::parse(args.iter().copied()).unwrap())
        };
        assert!(bad(&["--ros-args", "-r", "__node:=9lives"]).is_err());
        assert!(bad(&["--ros-args", "-r", "__ns:=/a//b"]).is_err());
        assert!(bad(&["--ros-args", "-r", "__ns:=/a b"]).is_err());
        assert_eq!(
            bad(&["--ros-args", "-r", "__ns:=/a/"]).unwrap().namespace,
            "/a"
        );
        let n = names(&["--ros-args", "-r", "image:=bad name"]);
        assert!(n.resolve_topic("image").is_err());
    }
}
