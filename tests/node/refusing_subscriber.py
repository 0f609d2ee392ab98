#!/usr/bin/env python3
"""A reliable subscriber that refuses samples: keep-all history with room for one sample,
never read. Run as its own process (Cyclone DDS shares one domain instance per process, so
in the peer's process it would hold back the peer's own readers too). Prints `ready` once
its reader is matched with the node's publisher, then waits to be killed.

    python3 tests/node/refusing_subscriber.py /clip_node/classification
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cyclonedds.core import Policy, Qos  # noqa: E402
from cyclonedds.util import duration  # noqa: E402

import ros_peer as rp  # noqa: E402


def main():
    topic = sys.argv[1]
    peer = rp.Peer()
    qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.Durability.Volatile,
              Policy.History.KeepAll, Policy.ResourceLimits(max_samples=1))
    reader = peer.reader(topic, rp.Classification, qos)
    rp.wait_for("the node's publisher", lambda: reader.get_subscription_matched_status().current_count > 0, 30)
    print("ready", flush=True)
    while reader is not None:  # never takes a sample
        time.sleep(1.0)


if __name__ == "__main__":
    main()
