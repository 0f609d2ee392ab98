"""Starts an installed clip_node and checks that it answers a Cyclone DDS peer: one raw
image on /image (sensor QoS) gets a vision_msgs/Classification on /clip_node/classification,
and the node's start-up log names the model folder it loaded, which must be `--expect-model`.
Used by tests/colcon_install.sh on the node of a colcon install tree.

    python3 tests/colcon_install_peer.py --log LOG --expect-model DIR -- NODE [ARGS...]

Run it only inside ../shared/tools/private-net (DDS discovery is multicast). Needs Python's
`cyclonedds` (11.0.1, as .ci/run installs); the ROS messages come from tests/node/ros_peer.py.
Exits 0 when every check holds, 1 with a message otherwise; the node is stopped (SIGINT,
then SIGKILL) in every case.
"""

import argparse
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "node"))
import ros_peer as rp  # noqa: E402

NODE = "/clip_node"
# A synthetic rgb8 frame (no image decoder needed): a colour gradient, 200x150.
WIDTH, HEIGHT = 200, 150


def log(message):
    print(f"[colcon_install_peer] {message}", flush=True)


def frame_bytes():
    data = bytearray(WIDTH * HEIGHT * 3)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            i = (y * WIDTH + x) * 3
            data[i] = x * 255 // (WIDTH - 1)
            data[i + 1] = y * 255 // (HEIGHT - 1)
            data[i + 2] = 128
    return bytes(data)


def logged_model_dir(node):
    """The folder in the node's `<fqn>: model <dir>, N phrases, ...` start-up line."""
    match = re.search(rf"{re.escape(NODE)}: model (.+?), \d+ phrases", node.log_text())
    return match.group(1) if match else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", required=True, help="file the node's stdout and stderr go to")
    parser.add_argument("--expect-model", required=True, help="model folder the node must load")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds for the node to start and answer (default 120)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- NODE [ARGS...]")
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no node command after --")
    # SIGTERM (e.g. from `timeout`) unwinds like an error, so the node is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("colcon_install_peer: terminated"))

    start = time.monotonic()
    log(f"starting: {' '.join(cmd)}")
    # The default model lookup from the executable's place, nothing else: no
    # $CLIP_PERCEPTION_MODEL, no $AMENT_PREFIX_PATH; the text embedding cache next to the log.
    env = {"XDG_CACHE_HOME": os.path.join(os.path.dirname(os.path.abspath(args.log)), "cache")}
    for name in ("CLIP_PERCEPTION_MODEL", "AMENT_PREFIX_PATH"):
        os.environ.pop(name, None)
    with rp.NodeProcess(cmd, args.log, env=env) as node:
        try:
            peer = rp.Peer()
            results = rp.Collector(
                peer.reader(f"{NODE}/classification", rp.Classification, rp.RELIABLE_DEEP_QOS))
            images = peer.writer("/image", rp.Image, rp.SENSOR_QOS)
            deadline = start + args.timeout

            def remaining():
                return max(1.0, deadline - time.monotonic())

            rp.wait_for("the node's subscription to /image (discovery)",
                        lambda: node.check_alive() or images.get_publication_matched_status().current_count > 0,
                        remaining())
            log(f"node discovered, its /image reader matched ({time.monotonic() - start:.1f} s)")

            data = frame_bytes()
            sec = 1000
            result = None
            # Best effort: a frame sent while the node is still loading the model may be
            # dropped, so publish again (a new stamp each time) until one is answered.
            while result is None:
                node.check_alive()
                if time.monotonic() > deadline:
                    raise rp.Failure(f"no Classification on {NODE}/classification within {args.timeout:.0f} s")
                sec += 1
                stamp = (sec, 0)
                header = rp.Header(stamp=rp.Time(sec=sec, nanosec=0), frame_id="colcon_install")
                images.write(rp.Image(header=header, height=HEIGHT, width=WIDTH, encoding="rgb8",
                                      is_bigendian=0, step=WIDTH * 3, data=data))
                try:
                    result = results.wait(f"the Classification of frame {stamp}",
                                          lambda c: c.header.frame_id == "colcon_install", 3.0)
                except rp.Failure:
                    pass
            scores = ", ".join(f"{h.class_id}={h.score:.3f}" for h in result.results)
            log(f"Classification for stamp {rp.stamp_of(result.header)} ({time.monotonic() - start:.1f} s): {scores}")
            rp.check(len(result.results) > 0, "the Classification has no results")

            logged = logged_model_dir(node)
            rp.check(logged is not None,
                     f"no '{NODE}: model <dir>, N phrases' line in the node's log:\n{node.log_text()}")
            rp.check(os.path.realpath(logged) == os.path.realpath(args.expect_model),
                     f"the node loaded model {logged} ({os.path.realpath(logged)}), "
                     f"not the installed {os.path.realpath(args.expect_model)}")
            log(f"node log: model {logged}")
            log(f"  = {os.path.realpath(logged)} (the install tree's)")

            code = node.stop()
            rp.check(code == 0, f"clip_node exited with code {code} after SIGINT; log:\n{node.log_text()}")
            log("node stopped on SIGINT, exit code 0")
        except rp.Failure as e:
            print(f"colcon_install_peer: FAILED: {e}", file=sys.stderr, flush=True)
            tail = node.log_text()[-4000:]
            print(f"--- node log tail ({args.log}) ---\n{tail}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
