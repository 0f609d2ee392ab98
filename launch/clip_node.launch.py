"""Launches clip_node: CLIP zero-shot matching of camera frames against task phrases.

    ros2 launch clip_perception clip_node.launch.py namespace:=robot1 \
        image_topic:=/camera/color/image_raw image_transport:=raw params_file:=/path/to/clip_node.yaml

Arguments:
  namespace    namespace of the node and its relative topics (default: none)
  params_file  ROS params file (default: the package's config/clip_node.yaml)
  image_topic  camera topic the node's `image` is remapped to (one remap for both transports:
               the node subscribes to `<image_topic>/compressed` for image_transport:=compressed,
               as image_transport names it)
  cameras      several cameras in one node: `name=topic` entries separated by commas or spaces,
               e.g. cameras:="head=/head_camera/color/image_raw,wrist=/wrist_camera/color/image_raw";
               sets the `cameras` parameter to the names and remaps each `name/image` to its
               topic (a bare `name` keeps `name/image`, relative to the namespace). Results:
               ~/<name>/classification and ~/<name>/matches. Empty: as the params file says
               (one camera on image_topic unless it lists `cameras`)
  image_transport  raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage);
               empty: as the params file says
  model_dir    model bundle folder; empty: as the params file says (by default the bundled
               tabletop model)
  precision    image encoder graph: int8, fp32 or auto (int8 where the bundle has one);
               empty: as the params file says
  use_sim_time true: follow /clock (e.g. `ros2 bag play --clock`); empty: as the params
               file says
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _clip_node(context):
    # `image_transport`, `model_dir` and `precision` override the params file only when given.
    overrides = {}
    for name in ("image_transport", "model_dir", "precision"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context)
    if use_sim_time:
        overrides["use_sim_time"] = use_sim_time.lower() == "true"
    image_topic = LaunchConfiguration("image_topic").perform(context)
    remappings = [("image", image_topic)]
    cameras = LaunchConfiguration("cameras").perform(context).replace(",", " ").split()
    if cameras:
        names = []
        for entry in cameras:
            name, _, topic = entry.partition("=")
            names.append(name)
            if topic:
                remappings.append((f"{name}/image", topic))
        overrides["cameras"] = names
    return [
        Node(
            package="clip_perception",
            executable="clip_node",
            name="clip_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[LaunchConfiguration("params_file")] + ([overrides] if overrides else []),
            remappings=remappings,
        )
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            "namespace", default_value="",
            description="Namespace of the node and its relative topics"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("clip_perception"), "config", "clip_node.yaml"]),
            description="ROS params file with the node's parameters"),
        DeclareLaunchArgument(
            "image_topic", default_value="image",
            description="Camera topic (sensor_msgs/Image; <topic>/compressed for "
                        "image_transport:=compressed)"),
        DeclareLaunchArgument(
            "cameras", default_value="",
            description="Several cameras in one node: name=topic entries separated by commas "
                        "or spaces (empty: as the params file says)"),
        DeclareLaunchArgument(
            "image_transport", default_value="", choices=["", "raw", "compressed"],
            description="raw: sensor_msgs/Image, compressed: sensor_msgs/CompressedImage "
                        "(empty: as the params file says)"),
        DeclareLaunchArgument(
            "model_dir", default_value="",
            description="Model bundle folder (empty: as the params file says)"),
        DeclareLaunchArgument(
            "precision", default_value="", choices=["", "auto", "int8", "fp32"],
            description="Image encoder graph: int8, fp32 or auto (empty: as the params file says)"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="", choices=["", "true", "false"],
            description="Follow /clock, as `ros2 bag play --clock` publishes it "
                        "(empty: as the params file says)"),
        OpaqueFunction(function=_clip_node),
    ])
