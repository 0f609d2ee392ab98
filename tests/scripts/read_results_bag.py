#!/usr/bin/env python3
"""Reads an MCAP file with mcap-ros2-support's decoder (an implementation nobody here
wrote) and prints each message as one JSON line: topic, schema name, log time and the
decoded ROS 2 message as plain data. Used by tests/replay.rs on `replay --out-bag` output.

    pip install mcap-ros2-support==0.6.0
    python3 tests/scripts/read_results_bag.py results.mcap
"""

import json
import sys

from mcap_ros2.reader import read_ros2_messages


def plain(value):
    """A decoded ROS message (dynamic classes with __slots__) as dicts and lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    slots = getattr(value, "__slots__", None)
    if slots:
        return {name: plain(getattr(value, name)) for name in slots}
    return value


def main() -> int:
    for m in read_ros2_messages(sys.argv[1]):
        print(json.dumps({"topic": m.channel.topic, "schema": m.schema.name, "log_time_ns": m.log_time_ns,
                          "message_encoding": m.channel.message_encoding, "msg": plain(m.ros_msg)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
