"""A ROS 2 peer without ROS: Eclipse Cyclone DDS (PyPI `cyclonedds`, the DDS of ROS 2's
rmw_cyclonedds) with the ROS 2 messages declared as IdlStructs under their DDS type names
(`pkg::msg::dds_::Name_`) on `rt/...` topics, plus the helpers the node tests and the
benchmark share: starting clip_node, waiting on conditions with bounded time, reading
/diagnostics values.

Run it only inside a private network namespace (../shared/tools/private-net): DDS
discovery is multicast.
"""

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl._machinery import BytesMachine
from cyclonedds.idl.types import float32, float64, int32, sequence, uint8, uint16, uint32
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
class VisionClass(IdlStruct, typename="vision_msgs::msg::dds_::VisionClass_"):
    class_id: uint16 = 0
    class_name: str = ""


@dataclass
class LabelInfo(IdlStruct, typename="vision_msgs::msg::dds_::LabelInfo_"):
    header: Header = field(default_factory=Header)
    class_map: sequence[VisionClass] = field(default_factory=list)
    threshold: float32 = 0.0


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
LATCHED_QOS = Qos(
    Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.TransientLocal, Policy.History.KeepLast(1)
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
        key = (name, cls.__name__)
        if key not in self._topics:
            self._topics[key] = Topic(self.participant, dds_topic(name), cls)
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
        self.count = 0

    def poll(self):
        for array in self.collector.poll():
            for status in array.status:
                if status.name == self.status_name:
                    self.values = {kv.key: kv.value for kv in status.values}
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
