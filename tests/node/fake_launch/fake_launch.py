"""Runs a ROS 2 Python launch file without ROS, to get the command lines `ros2 launch`
would start. It provides just the parts of `launch` and `launch_ros` that
launch/clip_node.launch.py uses (LaunchDescription, DeclareLaunchArgument, OpaqueFunction,
LaunchConfiguration, PathJoinSubstitution, FindPackageShare, Node) and builds each Node's
command line the way launch_ros does: `EXE --ros-args -r __node:=NAME -r __ns:=/NS`, then
`--params-file` per parameter file (a dict becomes a temporary file under the node's fully
qualified name), then `-r from:=to` per remapping.
"""

import importlib.util
import json
import os
import sys
import tempfile
import types


class LaunchContext:
    def __init__(self, arguments, share_dirs):
        self.launch_configurations = dict(arguments)
        self.share_dirs = share_dirs


def perform(value, context):
    """Resolves a substitution, a list of them (concatenated), or a plain value (string,
    bool, number: launch_ros takes those in parameter dicts as they are)."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(perform(v, context) for v in value)
    return value.perform(context)


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        if self.name not in context.launch_configurations:
            raise KeyError(f"launch argument {self.name!r} is not declared")
        return context.launch_configurations[self.name]


class PathJoinSubstitution:
    def __init__(self, parts):
        self.parts = parts

    def perform(self, context):
        return os.path.join(*[perform(p, context) for p in self.parts])


class FindPackageShare:
    def __init__(self, package):
        self.package = package

    def perform(self, context):
        return context.share_dirs[self.package]


class DeclareLaunchArgument:
    def __init__(self, name, default_value=None, description="", choices=None):
        self.name, self.default_value, self.choices = name, default_value, choices

    def visit(self, context):
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise ValueError(f"launch argument {self.name!r} has no value and no default")
            context.launch_configurations[self.name] = perform(self.default_value, context)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"launch argument {self.name}:={value!r} is not one of {self.choices}")
        return []


class OpaqueFunction:
    def __init__(self, function):
        self.function = function

    def visit(self, context):
        return self.function(context) or []


class LaunchDescription:
    def __init__(self, entities):
        self.entities = entities


class Node:
    def __init__(self, package, executable, name=None, namespace=None, parameters=(), remappings=(),
                 output=None, arguments=(), emulate_tty=None):
        self.package, self.executable, self.name, self.namespace = package, executable, name, namespace
        self.parameters, self.remappings, self.arguments = parameters, remappings, arguments

    def visit(self, context):
        context.nodes.append(self)
        return []

    def command(self, context, executables, tmp_dir):
        cmd = [executables[(self.package, self.executable)]] + [perform(a, context) for a in self.arguments]
        cmd.append("--ros-args")
        ns = perform(self.namespace, context) if self.namespace is not None else ""
        if ns and not ns.startswith("/"):
            ns = "/" + ns
        if self.name:
            cmd += ["-r", f"__node:={perform(self.name, context)}"]
        if ns:
            cmd += ["-r", f"__ns:={ns}"]
        fqn = (ns.rstrip("/") + "/" + perform(self.name, context)) if self.name else "/**"
        for p in self.parameters:
            if isinstance(p, dict):
                # launch_ros writes this file with PyYAML; JSON is YAML too.
                body = {fqn: {"ros__parameters": {k: parameter_value(v, context) for k, v in p.items()}}}
                fd, path = tempfile.mkstemp(prefix="launch_params_", suffix=".yaml", dir=tmp_dir)
                with os.fdopen(fd, "w") as f:
                    json.dump(body, f)
                cmd += ["--params-file", path]
            else:
                cmd += ["--params-file", perform(p, context)]
        for src, dst in self.remappings:
            cmd += ["-r", f"{perform(src, context)}:={perform(dst, context)}"]
        return cmd


def parameter_value(value, context):
    """A parameter dict's value as launch_ros evaluates it: a list of plain values stays a
    list (a string array, etc.); a list holding a substitution is one concatenated string."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    return perform(value, context)


def _install_modules():
    modules = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration,
                                 "PathJoinSubstitution": PathJoinSubstitution},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node},
        "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


def node_commands(launch_file, arguments, executables, tmp_dir, share_dirs=None):
    """The command line of every Node the launch file starts with these launch arguments."""
    _install_modules()
    spec = importlib.util.spec_from_file_location("launch_file_under_test", launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(launch_file)))
    context = LaunchContext(arguments, share_dirs or {"clip_perception": package_root})
    context.nodes = []
    pending = list(description.entities)
    while pending:
        entity = pending.pop(0)
        pending = list(entity.visit(context)) + pending
    return [node.command(context, executables, tmp_dir) for node in context.nodes]
