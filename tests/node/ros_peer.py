"""A ROS 2 peer without ROS: Eclipse Cyclone DDS (PyPI `cyclonedds`, the DDS of ROS 2's
rmw_cyclonedds) with the ROS 2 messages declared as IdlStructs under their DDS type names
(`pkg::msg::dds_::Name_`) on `rt/...` topics, plus the helpers the node tests and the
benchmark share: starting clip_node, waiting on conditions with bounded time, reading
/diagnostics values, calling a node's parameter services as rmw_cyclonedds_cpp does.

Run it only inside a private network namespace (../shared/tools/private-net): DDS
discovery is multicast.
"""

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl._machinery import BytesMachine
from cyclonedds.idl.types import array, float32, float64, int32, int64, sequence, uint8, uint16, uint32, uint64
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    encoding: str = ""
    is_bigendian: uint8 = 0
    step: uint32 = 0
    data: sequence[uint8] = field(default_factory=bytes)


@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header = field(default_factory=Header)
    format: str = ""
    data: sequence[uint8] = field(default_factory=bytes)


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


@dataclass
class ObjectHypothesis(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesis_"):
    class_id: str = ""
    score: float64 = 0.0


@dataclass
class Classification(IdlStruct, typename="vision_msgs::msg::dds_::Classification_"):
    header: Header = field(default_factory=Header)
    results: sequence[ObjectHypothesis] = field(default_factory=list)


@dataclass
class Point2D(IdlStruct, typename="vision_msgs::msg::dds_::Point2D_"):
    x: float64 = 0.0
    y: float64 = 0.0


@dataclass
class Pose2D(IdlStruct, typename="vision_msgs::msg::dds_::Pose2D_"):
    position: Point2D = field(default_factory=Point2D)
    theta: float64 = 0.0


@dataclass
class BoundingBox2D(IdlStruct, typename="vision_msgs::msg::dds_::BoundingBox2D_"):
    center: Pose2D = field(default_factory=Pose2D)
    size_x: float64 = 0.0
    size_y: float64 = 0.0


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovariance_"):
    pose: Pose = field(default_factory=Pose)
    covariance: array[float64, 36] = field(default_factory=lambda: [0.0] * 36)


@dataclass
class ObjectHypothesisWithPose(IdlStruct, typename="vision_msgs::msg::dds_::ObjectHypothesisWithPose_"):
    hypothesis: ObjectHypothesis = field(default_factory=ObjectHypothesis)
    pose: PoseWithCovariance = field(default_factory=PoseWithCovariance)


@dataclass
class Detection2D(IdlStruct, typename="vision_msgs::msg::dds_::Detection2D_"):
    header: Header = field(default_factory=Header)
    results: sequence[ObjectHypothesisWithPose] = field(default_factory=list)
    bbox: BoundingBox2D = field(default_factory=BoundingBox2D)
    id: str = ""


@dataclass
class Detection2DArray(IdlStruct, typename="vision_msgs::msg::dds_::Detection2DArray_"):
    header: Header = field(default_factory=Header)
    detections: sequence[Detection2D] = field(default_factory=list)


@dataclass
class VisionClass(IdlStruct, typename="vision_msgs::msg::dds_::VisionClass_"):
    class_id: uint16 = 0
    class_name: str = ""


@dataclass
class LabelInfo(IdlStruct, typename="vision_msgs::msg::dds_::LabelInfo_"):
    header: Header = field(default_factory=Header)
    class_map: sequence[VisionClass] = field(default_factory=list)
    threshold: float32 = 0.0


@dataclass
class Clock(IdlStruct, typename="rosgraph_msgs::msg::dds_::Clock_"):
    clock: Time = field(default_factory=Time)


@dataclass
class Log(IdlStruct, typename="rcl_interfaces::msg::dds_::Log_"):
    stamp: Time = field(default_factory=Time)
    level: uint8 = 0
    name: str = ""
    msg: str = ""
    file: str = ""
    function: str = ""
    line: uint32 = 0


@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str = ""
    value: str = ""


@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: uint8 = 0
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: sequence[KeyValue] = field(default_factory=list)


@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header = field(default_factory=Header)
    status: sequence[DiagnosticStatus] = field(default_factory=list)


# rcl_interfaces (ROS 2 Jazzy): parameters, their services and /parameter_events.
# ParameterValue.type and ParameterDescriptor.type (rcl_interfaces/msg/ParameterType).
(PARAMETER_NOT_SET, PARAMETER_BOOL, PARAMETER_INTEGER, PARAMETER_DOUBLE, PARAMETER_STRING,
 PARAMETER_BYTE_ARRAY, PARAMETER_BOOL_ARRAY, PARAMETER_INTEGER_ARRAY, PARAMETER_DOUBLE_ARRAY,
 PARAMETER_STRING_ARRAY) = range(10)


@dataclass
class ParameterValue(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterValue_"):
    type: uint8 = PARAMETER_NOT_SET
    bool_value: bool = False
    integer_value: int64 = 0
    double_value: float64 = 0.0
    string_value: str = ""
    byte_array_value: sequence[uint8] = field(default_factory=list)
    bool_array_value: sequence[bool] = field(default_factory=list)
    integer_array_value: sequence[int64] = field(default_factory=list)
    double_array_value: sequence[float64] = field(default_factory=list)
    string_array_value: sequence[str] = field(default_factory=list)


@dataclass
class Parameter(IdlStruct, typename="rcl_interfaces::msg::dds_::Parameter_"):
    name: str = ""
    value: ParameterValue = field(default_factory=ParameterValue)


@dataclass
class FloatingPointRange(IdlStruct, typename="rcl_interfaces::msg::dds_::FloatingPointRange_"):
    from_value: float64 = 0.0
    to_value: float64 = 0.0
    step: float64 = 0.0


@dataclass
class IntegerRange(IdlStruct, typename="rcl_interfaces::msg::dds_::IntegerRange_"):
    from_value: int64 = 0
    to_value: int64 = 0
    step: uint64 = 0


@dataclass
class ParameterDescriptor(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterDescriptor_"):
    name: str = ""
    type: uint8 = PARAMETER_NOT_SET
    description: str = ""
    additional_constraints: str = ""
    read_only: bool = False
    dynamic_typing: bool = False
    floating_point_range: sequence[FloatingPointRange] = field(default_factory=list)
    integer_range: sequence[IntegerRange] = field(default_factory=list)


@dataclass
class SetParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::SetParametersResult_"):
    successful: bool = False
    reason: str = ""


@dataclass
class ListParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::ListParametersResult_"):
    names: sequence[str] = field(default_factory=list)
    prefixes: sequence[str] = field(default_factory=list)


@dataclass
class ParameterEvent(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterEvent_"):
    stamp: Time = field(default_factory=Time)
    node: str = ""
    new_parameters: sequence[Parameter] = field(default_factory=list)
    changed_parameters: sequence[Parameter] = field(default_factory=list)
    deleted_parameters: sequence[Parameter] = field(default_factory=list)


# Service requests and responses as rmw_cyclonedds_cpp puts them on the wire: its request
# header (`cdds_request_header_t`: the client's 64-bit id and the request's sequence
# number, echoed in the response) comes before the srv's own fields.
@dataclass
class ListParameters_Request(IdlStruct, typename="rcl_interfaces::srv::dds_::ListParameters_Request_"):
    guid: uint64 = 0
    seq: int64 = 0
    prefixes: sequence[str] = field(default_factory=list)
    depth: uint64 = 0


@dataclass
class ListParameters_Response(IdlStruct, typename="rcl_interfaces::srv::dds_::ListParameters_Response_"):
    guid: uint64 = 0
    seq: int64 = 0
    result: ListParametersResult = field(default_factory=ListParametersResult)


@dataclass
class GetParameters_Request(IdlStruct, typename="rcl_interfaces::srv::dds_::GetParameters_Request_"):
    guid: uint64 = 0
    seq: int64 = 0
    names: sequence[str] = field(default_factory=list)


@dataclass
class GetParameters_Response(IdlStruct, typename="rcl_interfaces::srv::dds_::GetParameters_Response_"):
    guid: uint64 = 0
    seq: int64 = 0
    values: sequence[ParameterValue] = field(default_factory=list)


@dataclass
class GetParameterTypes_Request(IdlStruct, typename="rcl_interfaces::srv::dds_::GetParameterTypes_Request_"):
    guid: uint64 = 0
    seq: int64 = 0
    names: sequence[str] = field(default_factory=list)


@dataclass
class GetParameterTypes_Response(IdlStruct, typename="rcl_interfaces::srv::dds_::GetParameterTypes_Response_"):
    guid: uint64 = 0
    seq: int64 = 0
    types: sequence[uint8] = field(default_factory=list)


@dataclass
class SetParameters_Request(IdlStruct, typename="rcl_interfaces::srv::dds_::SetParameters_Request_"):
    guid: uint64 = 0
    seq: int64 = 0
    parameters: sequence[Parameter] = field(default_factory=list)


@dataclass
class SetParameters_Response(IdlStruct, typename="rcl_interfaces::srv::dds_::SetParameters_Response_"):
    guid: uint64 = 0
    seq: int64 = 0
    results: sequence[SetParametersResult] = field(default_factory=list)


@dataclass
class SetParametersAtomically_Request(
        IdlStruct, typename="rcl_interfaces::srv::dds_::SetParametersAtomically_Request_"):
    guid: uint64 = 0
    seq: int64 = 0
    parameters: sequence[Parameter] = field(default_factory=list)


@dataclass
class SetParametersAtomically_Response(
        IdlStruct, typename="rcl_interfaces::srv::dds_::SetParametersAtomically_Response_"):
    guid: uint64 = 0
    seq: int64 = 0
    result: SetParametersResult = field(default_factory=SetParametersResult)


@dataclass
class DescribeParameters_Request(IdlStruct, typename="rcl_interfaces::srv::dds_::DescribeParameters_Request_"):
    guid: uint64 = 0
    seq: int64 = 0
    names: sequence[str] = field(default_factory=list)


@dataclass
class DescribeParameters_Response(IdlStruct, typename="rcl_interfaces::srv::dds_::DescribeParameters_Response_"):
    guid: uint64 = 0
    seq: int64 = 0
    descriptors: sequence[ParameterDescriptor] = field(default_factory=list)


def _bytes_for_uint8_sequences(cls, member="data"):
    """Serializes a `sequence[uint8]` member with Cyclone's bytes machine: the same CDR
    (uint32 length + the bytes), ~30x faster than element by element. The declared type,
    which discovery announces, stays sequence<uint8> as in ROS 2."""
    cls.__idl__.populate()
    for machine in (cls.__idl__.v1_machine, cls.__idl__.v2_machine):
        if hasattr(machine, "members_machines"):
            machine.members_machines[member] = BytesMachine()


_bytes_for_uint8_sequences(Image)
_bytes_for_uint8_sequences(CompressedImage)

SENSOR_QOS = Qos(Policy.Reliability.BestEffort, Policy.Durability.Volatile, Policy.History.KeepLast(5))
RELIABLE_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.Volatile, Policy.History.KeepLast(10)
)
# Readers that must not lose a result while the test is busy.
RELIABLE_DEEP_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.Volatile, Policy.History.KeepLast(1000)
)
# rcl's /rosout QoS: a late subscriber still gets the records since start.
ROSOUT_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.TransientLocal, Policy.History.KeepLast(1000)
)
LATCHED_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.TransientLocal, Policy.History.KeepLast(1)
)

# rclcpp's QoS of /parameter_events (rmw_qos_profile_parameter_events) and of services
# (rmw_qos_profile_services_default).
PARAMETER_EVENTS_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.Volatile, Policy.History.KeepLast(1000)
)
SERVICE_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.Volatile, Policy.History.KeepLast(10)
)


class Failure(Exception):
    """A test expectation that did not hold."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def dds_topic(name):
    """ROS topic `/a/b` is DDS topic `rt/a/b`."""
    assert name.startswith("/"), name
    return "rt" + name


def stamp_of(header):
    return (header.stamp.sec, header.stamp.nanosec)


class Peer:
    """One DDS participant with writers and readers by ROS topic name."""

    def __init__(self):
        self.participant = DomainParticipant(0)
        self._topics = {}

    def topic(self, name, cls):
        return self.raw_topic(dds_topic(name), cls)

    def raw_topic(self, dds_name, cls):
        """A topic by its DDS name (services' `rq`/`rr` topics have no ROS topic name)."""
        key = (dds_name, cls.__name__)
        if key not in self._topics:
            self._topics[key] = Topic(self.participant, dds_name, cls)
        return self._topics[key]

    def writer(self, name, cls, qos):
        return DataWriter(self.participant, self.topic(name, cls), qos=qos)

    def reader(self, name, cls, qos):
        return DataReader(self.participant, self.topic(name, cls), qos=qos)


def wait_for(what, condition, timeout, interval=0.005):
    """Polls `condition()` until it returns something truthy (returned) or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def delete_entity(entity):
    """Deletes a DDS entity now (a writer or reader: discovery tells the others it left),
    rather than whenever the garbage collector gets to it."""
    entity.__del__()


def wait_matched(writer, what, timeout=20.0):
    wait_for(f"a subscriber on {what}", lambda: writer.get_publication_matched_status().current_count > 0, timeout)


class Collector:
    """Takes everything a reader has, keeping it in arrival order."""

    def __init__(self, reader):
        self.reader = reader
        self.items = []

    def poll(self):
        got = self.reader.take(N=256)
        self.items.extend(got)
        return got

    def wait(self, what, predicate, timeout):
        """The first sample (already taken or arriving) that satisfies `predicate`."""
        def find():
            self.poll()
            for item in self.items:
                if predicate(item):
                    return item
            return None
        return wait_for(what, find, timeout)


class Diagnostics:
    """The newest /diagnostics values of one node, as a dict of strings."""

    def __init__(self, peer, status_name):
        self.collector = Collector(peer.reader("/diagnostics", DiagnosticArray, RELIABLE_QOS))
        self.status_name = status_name
        self.values = None
        self.status = None  # the newest DiagnosticStatus itself (level, message, hardware_id)
        self.count = 0

    def poll(self):
        for array in self.collector.poll():
            for status in array.status:
                if status.name == self.status_name:
                    self.values = {kv.key: kv.value for kv in status.values}
                    self.status = status
                    self.count += 1
        self.collector.items.clear()
        return self.values

    def get(self, key, default=None):
        self.poll()
        if self.values is None:
            return default
        return self.values.get(key, default)

    def number(self, key):
        value = self.get(key)
        return None if value in (None, "-") else float(value)

    def wait_status(self, what, predicate, timeout=20.0):
        """Waits for a status that satisfies `predicate(status)`; returns it."""
        def ok():
            self.poll()
            return self.status is not None and predicate(self.status)
        wait_for(what, ok, timeout)
        return self.status

    def wait(self, what, predicate, timeout=20.0):
        """Waits for a diagnostics message whose values satisfy `predicate(values)`."""
        def ok():
            self.poll()
            return self.values is not None and predicate(self.values)
        wait_for(what, ok, timeout)
        return self.values


class NodeProcess:
    """clip_node started as a child, its log in a file."""

    def __init__(self, cmd, log_path, env=None):
        self.cmd = [str(c) for c in cmd]
        self.log_path = log_path
        self.log = open(log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)

    def check_alive(self):
        code = self.proc.poll()
        check(code is None, f"clip_node exited with code {code}; log:\n{self.log_text()}")

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=10.0):
        """SIGINT (what ros2 launch sends), then SIGKILL if it does not exit; returns the code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure(f"clip_node did not exit within {timeout:.0f} s of SIGINT")
        self.log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def node_command(node_bin, params, ros_args=()):
    """`clip_node --ros-args -p name:=value ...` with values written as YAML flow text."""
    cmd = [node_bin, "--ros-args"]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={json.dumps(value) if not isinstance(value, str) else value}"]
    return cmd + list(ros_args)


def image_message(frame, stamp, frame_id):
    """A sensor_msgs Image or CompressedImage from a case of cases.json."""
    header = Header(stamp=Time(sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id)
    with open(frame["data"], "rb") as f:
        data = f.read()
    if frame["kind"] == "compressed":
        return CompressedImage(header=header, format=frame["format"], data=data)
    return Image(
        header=header, height=frame["height"], width=frame["width"], encoding=frame["encoding"],
        is_bigendian=frame.get("is_bigendian", 0), step=frame["step"], data=data,
    )


def pv_bool(x):
    return ParameterValue(type=PARAMETER_BOOL, bool_value=x)


def pv_int(x):
    return ParameterValue(type=PARAMETER_INTEGER, integer_value=x)


def pv_double(x):
    return ParameterValue(type=PARAMETER_DOUBLE, double_value=x)


def pv_str(s):
    return ParameterValue(type=PARAMETER_STRING, string_value=s)


def pv_str_array(strings):
    return ParameterValue(type=PARAMETER_STRING_ARRAY, string_array_value=list(strings))


_PV_FIELDS = {
    PARAMETER_BOOL: "bool_value", PARAMETER_INTEGER: "integer_value", PARAMETER_DOUBLE: "double_value",
    PARAMETER_STRING: "string_value", PARAMETER_BYTE_ARRAY: "byte_array_value",
    PARAMETER_BOOL_ARRAY: "bool_array_value", PARAMETER_INTEGER_ARRAY: "integer_array_value",
    PARAMETER_DOUBLE_ARRAY: "double_array_value", PARAMETER_STRING_ARRAY: "string_array_value",
}


def pv_to_python(value):
    """A ParameterValue as the Python value it holds (None when not set; arrays as lists)."""
    if value.type == PARAMETER_NOT_SET:
        return None
    check(value.type in _PV_FIELDS, f"ParameterValue of unknown type {value.type}")
    v = getattr(value, _PV_FIELDS[value.type])
    return list(v) if isinstance(v, (list, bytes)) else v


def parameter_events(peer):
    """A collector of /parameter_events (every node's)."""
    return Collector(peer.reader("/parameter_events", ParameterEvent, PARAMETER_EVENTS_QOS))


# service name -> (request type, response type)
PARAMETER_SERVICES = {
    "list_parameters": (ListParameters_Request, ListParameters_Response),
    "get_parameters": (GetParameters_Request, GetParameters_Response),
    "get_parameter_types": (GetParameterTypes_Request, GetParameterTypes_Response),
    "set_parameters": (SetParameters_Request, SetParameters_Response),
    "set_parameters_atomically": (SetParametersAtomically_Request, SetParametersAtomically_Response),
    "describe_parameters": (DescribeParameters_Request, DescribeParameters_Response),
}


class ParamClient:
    """A client of node `fqn`'s parameter services as rmw_cyclonedds_cpp makes one: requests
    on `rq<fqn>/<service>Request`, responses on `rr<fqn>/<service>Reply`, and the response
    to a request is the one that carries its guid (fixed per client) and seq (one per call).
    Responses to clients of the other request mapping (RPC-over-DDS "enhanced") share the
    topics: Cyclone drops those that do not decode as these types (logging "deserialization
    ... failed"), the rest carry another guid. The endpoints are created at once, so that
    discovery runs while the caller does other things."""

    def __init__(self, peer, fqn, timeout=20.0):
        self.fqn = fqn
        self.timeout = timeout
        self.guid = random.getrandbits(64)
        self.seq = 0
        self._endpoints = {}
        self._matched = set()
        for service, (request_cls, response_cls) in PARAMETER_SERVICES.items():
            writer = DataWriter(
                peer.participant, peer.raw_topic(f"rq{fqn}/{service}Request", request_cls), qos=SERVICE_QOS)
            reader = DataReader(
                peer.participant, peer.raw_topic(f"rr{fqn}/{service}Reply", response_cls), qos=SERVICE_QOS)
            self._endpoints[service] = (request_cls, writer, Collector(reader))

    def call(self, service, **fields):
        """Sends one request and returns its response (bounded wait)."""
        request_cls, writer, responses = self._endpoints[service]
        name = f"{self.fqn}/{service}"
        if service not in self._matched:
            wait_matched(writer, f"{name}'s requests", self.timeout)
            wait_for(f"a writer of {name}'s replies",
                     lambda: responses.reader.get_subscription_matched_status().current_count > 0, self.timeout)
            self._matched.add(service)
        self.seq += 1
        seq = self.seq
        writer.write(request_cls(guid=self.guid, seq=seq, **fields))
        response = responses.wait(f"the response to {name} request {seq}",
                                  lambda r: r.guid == self.guid and r.seq == seq, self.timeout)
        responses.items.clear()  # the rest answered earlier calls or other clients
        return response

    def list(self, prefixes=(), depth=0):
        """The ListParametersResult."""
        return self.call("list_parameters", prefixes=list(prefixes), depth=depth).result

    def get(self, names):
        """One ParameterValue per name (type PARAMETER_NOT_SET for an unknown one)."""
        return self.call("get_parameters", names=list(names)).values

    def get_types(self, names):
        return list(self.call("get_parameter_types", names=list(names)).types)

    def set(self, parameters):
        """One SetParametersResult per Parameter, each set on its own."""
        return self.call("set_parameters", parameters=list(parameters)).results

    def set_atomically(self, parameters):
        """One SetParametersResult: all of them set, or none."""
        return self.call("set_parameters_atomically", parameters=list(parameters)).result

    def describe(self, names):
        return self.call("describe_parameters", names=list(names)).descriptors
