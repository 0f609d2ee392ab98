#!/usr/bin/env python3
"""Benchmark of clip_node on the wire: a Cyclone DDS peer publishes 640x480 rgb8 frames at
30 Hz for 60 s (per camera; with --cameras N, one node with N cameras against N
single-camera nodes in the same run); the table shows, per model, the time from launching the node to its first
Classification (frames offered at 10 Hz from the moment its subscription matches), the node's processed rate, dropped frames,
receive -> publish latency (p50/p99, as the node measures it in ~/matches) next to the image
encoder's median time (the target: p99 <= 1.5x the encoder median), the localisation time
per frame (diagnostics; with `--param localize:=true`), the node's CPU use,
its RSS at the end of the run and its peak RSS (VmHWM, model loading included).
`--start warm` first starts the node once on the run's embedding cache (until its model is
loaded), so the measured start finds its phrases cached, as a robot's does from its second
boot on; `cold` (the default) starts on an empty cache (the text tower is loaded to embed
the phrases); `both` runs each.

    python3 tests/node/bench_node.py                      # re-runs itself under private-net
    python3 tests/node/bench_node.py --duration 20 --models models/tabletop
    python3 tests/node/bench_node.py --cameras 2 --duration 30
    python3 tests/node/bench_node.py --start both --duration 20

Models: the bundled default model (models/tabletop, once it exists) and random-init
ViT-B/32, made with
    python3 models/export.py --random-init --arch vit-b-32 --seed 0 --out models/.cache/random-vit-b-32-seed0
    python3 models/quantize.py models/.cache/random-vit-b-32-seed0   # its int8 graph (7-bit weights)
Builds nothing: run `cargo build --release --bin clip_node` first.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODELS = ["models/tabletop", "models/.cache/random-vit-b-32-seed0"]
PHRASES = ["red cup", "blue ball", "green box", "yellow banana", "white phone"]


def quantile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_memory_mb(pid, field):
    """VmRSS (now) or VmHWM (peak) of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Camera:
    """One camera stream of the benchmark: its image topic, and the node's result topics
    and diagnostics status for it."""

    def __init__(self, image_topic, results_prefix, status_name):
        self.image_topic, self.results_prefix, self.status_name = image_topic, results_prefix, status_name


def layouts(cameras):
    """(label, [(extra params, ros args, [Camera])]) per layout to compare: one node (with
    `cameras` when N > 1), and for N > 1 also N single-camera nodes."""
    if cameras == 1:
        return [("1 node", [({}, [], [Camera("/image", "/clip_node", "clip_node: clip")])])]
    names = [f"cam{i}" for i in range(cameras)]
    one = ({"cameras": names}, [],
           [Camera(f"/{c}/image", f"/clip_node/{c}", f"clip_node: {c}") for c in names])
    many = [({}, ["-r", f"__node:=clip_node_{i}", "-r", f"image:=/{c}/image"],
             [Camera(f"/{c}/image", f"/clip_node_{i}", f"clip_node_{i}: clip")]) for i, c in enumerate(names)]
    return [(f"1 node x {cameras} cameras", [one]), (f"{cameras} nodes x 1 camera", many)]


def fill_cache(args, params, work):
    """Starts the node once on `params`' cache dir until its model is loaded (its phrases
    embedded and cached), then stops it."""
    import ros_peer as rp

    with rp.NodeProcess(rp.node_command(args.node, params), os.path.join(work, "fill.log")) as p:
        deadline = time.monotonic() + 300
        while "model loaded" not in p.log_text():
            p.check_alive()
            if time.monotonic() > deadline:
                raise rp.Failure("the cache-filling start did not load its model within 300 s")
            time.sleep(0.1)
        p.stop()


def bench_layout(args, model, work, nodes, warm=False):
    import ros_peer as rp

    params = {
        "model_dir": model, "labels": PHRASES, "image_transport": "raw", "threads": args.threads,
        "diagnostics_period": 1.0, "cache_dir": os.path.join(work, "cache"),
    }
    for extra in args.param:
        name, value = extra.split(":=", 1)
        params[name] = value
    if warm:
        fill_cache(args, params, work)
    launched = time.monotonic()
    procs = []
    for i, (extra, ros_args, _) in enumerate(nodes):
        procs.append(rp.NodeProcess(rp.node_command(args.node, {**params, **extra}, ros_args),
                                    os.path.join(work, f"node{i}.log")))
    cameras = [c for _, _, cams in nodes for c in cams]
    peer = rp.Peer()
    for c in cameras:
        c.results = rp.Collector(peer.reader(f"{c.results_prefix}/classification", rp.Classification,
                                             rp.RELIABLE_DEEP_QOS))
        c.matches = rp.Collector(peer.reader(f"{c.results_prefix}/matches", rp.String, rp.RELIABLE_DEEP_QOS))
        c.diagnostics = rp.Diagnostics(peer, c.status_name)
        c.writer = peer.writer(c.image_topic, rp.Image, rp.SENSOR_QOS)
    rng = random.Random(0)
    w, h = args.width, args.height
    images = [bytes(rng.getrandbits(8) for _ in range(w * h * 3)) if i == 0 else None for i in range(4)]
    for i in range(1, 4):  # cheap variations of one random image
        images[i] = images[0][i * 997:] + images[0][:i * 997]

    def image(stamp, frame_id, i):
        return rp.Image(header=rp.Header(stamp=rp.Time(*stamp), frame_id=frame_id), height=h, width=w,
                        encoding="rgb8", step=w * 3, data=images[i % 4])

    def alive():
        for p in procs:
            p.check_alive()

    try:
        # Start-up: frames at 10 Hz on every camera from the moment the node's subscription
        # is matched; the time from launching to the first Classification of every camera.
        for c in cameras:
            rp.wait_matched(c.writer, c.image_topic, timeout=300)
        waiting = list(cameras)
        while waiting:
            alive()
            if time.monotonic() - launched > 300:
                raise rp.Failure("no result within 300 s of start")
            for c in waiting:
                c.writer.write(image((0, 0), "startup", 0))
            time.sleep(0.1)
            waiting = [c for c in waiting if not (c.results.items or c.results.poll())]
        first_result_s = time.monotonic() - launched
        for c in cameras:
            c.diagnostics.wait("the node to start", lambda v: v.get("state") == "running", timeout=300)
        # Warm-up (not measured): the first frames pay one-time costs.
        for i in range(5):
            for c in cameras:
                c.writer.write(image((1, i), "warmup", i))
            time.sleep(0.2)
        time.sleep(1.0)
        for c in cameras:
            c.results.poll()
            c.matches.poll()
            c.results.items.clear()
            c.matches.items.clear()
            c.start_diag = dict(c.diagnostics.wait("diagnostics after the warm-up", lambda v: True))
        cpu0, t0 = sum(proc_cpu_seconds(p.proc.pid) for p in procs), time.monotonic()
        period = 1.0 / args.rate
        n = int(args.duration * args.rate)
        sent = 0
        # Cameras are not synchronised: camera k publishes k/N of a period after camera 0.
        ticks = sorted((i * period + k * period / len(cameras), i, k) for i in range(n) for k in range(len(cameras)))
        for offset, i, k in ticks:
            target = t0 + offset
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            cameras[k].writer.write(image((100 + i // 1000, (i % 1000) * 1000), "bench", i))
            sent += 1
            if i % 10 == 0 and k == 0:
                for c in cameras:
                    c.results.poll()
        t1 = time.monotonic()
        cpu1 = sum(proc_cpu_seconds(p.proc.pid) for p in procs)
        time.sleep(2.0)
        for c in cameras:
            c.results.poll()
            c.matches.poll()
        time.sleep(1.2)
        for c in cameras:
            c.end_diag = c.diagnostics.wait("final diagnostics", lambda v: True)
        alive()
        rss = sum(proc_memory_mb(p.proc.pid, "VmRSS") for p in procs)
        peak_rss = sum(proc_memory_mb(p.proc.pid, "VmHWM") for p in procs)
    finally:
        for p in procs:
            p.stop()

    latency, encoder, rates, processed, dropped, received = [], [], [], 0, 0, 0
    for c in cameras:
        m = [json.loads(x.data) for x in c.matches.items]
        m = [x for x in m if x["frame_id"] == "bench"]
        latency += [x["latency_ms"] for x in m]
        encoder += [x["encoder_ms"] for x in m]

        def count(key):
            return int(c.end_diag[key]) - int(c.start_diag[key])
        rates.append(count("frames processed") / (t1 - t0))
        processed += count("frames processed")
        dropped += count("frames dropped")
        received += count("frames received")
    diag = cameras[0].end_diag
    return {
        "model": model,
        "sent": sent,
        "received": received,
        "processed": processed,
        "dropped": dropped,
        "rate": processed / (t1 - t0),
        "camera_rates": rates,
        "frames_per_batch": diag.get("frames per batch (mean)", "-"),
        "localization_median": diag.get("localization median (ms)", "-"),
        "encoder_median": statistics.median(encoder) if encoder else float("nan"),
        "encoder_p99": quantile(encoder, 0.99),
        "latency_p50": quantile(latency, 0.50),
        "latency_p99": quantile(latency, 0.99),
        "cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mb": rss,
        "peak_rss_mb": peak_rss,
        "first_result_s": first_result_s,
        "cpu": diag.get("cpu", "unknown"),
        "kernels": diag.get("matrix kernels", "unknown"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", default=os.path.join(ROOT, "target/release/clip_node"))
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of publishing per model")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=2, help="the node's encoder threads")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter, e.g. wait_for_fresh_frame:=false (repeatable)")
    parser.add_argument("--cameras", type=int, default=1,
                        help="cameras streaming at --rate each; with N > 1 one node with N cameras is "
                             "compared with N single-camera nodes in the same run")
    parser.add_argument("--start", choices=["cold", "warm", "both"], default="cold",
                        help="start on an empty embedding cache (cold), on one the node filled in a "
                             "first start (warm), or measure both")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    if os.environ.get("PRIVATE_NET_INSIDE") != "1":
        tool = os.path.join(ROOT, "..", "shared", "tools", "private-net")
        os.execv("/bin/bash", ["bash", tool, sys.executable] + sys.argv)
    if not os.path.exists(args.node):
        sys.exit(f"{args.node} not found: run `cargo build --release --bin clip_node` first")

    rows = []
    for model in args.models:
        path = os.path.join(ROOT, model) if not os.path.isabs(model) else model
        if not os.path.exists(os.path.join(path, "model.yaml")):
            print(f"skipping {model}: no model.yaml (see this script's help for how to make it)", file=sys.stderr)
            continue
        starts = ["cold", "warm"] if args.start == "both" else [args.start]
        for label, nodes in layouts(args.cameras):
            for start in starts:
                print(f"benchmarking {model}, {label}, {start} start: {args.width}x{args.height} rgb8 at "
                      f"{args.rate:g} Hz per camera for {args.duration:g} s", file=sys.stderr, flush=True)
                with tempfile.TemporaryDirectory() as work:
                    row = bench_layout(args, path, work, nodes, warm=start == "warm")
                row["layout"] = label
                row["start"] = start
                rows.append(row)
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    header = ("model", "layout", "start", "first result s", "encoder median ms", "localization median ms", "processed Hz", "Hz per camera", "sent",
              "received", "dropped", "encoder p99 ms", "latency p50 ms", "latency p99 ms", "p99 / encoder", "CPU %",
              "RSS MB", "peak RSS MB", "peak / RSS")
    for machine in sorted({(r["cpu"], r["kernels"]) for r in rows}):
        print("cpu: {}; engine: {}".format(*machine))
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        per_camera = " / ".join(f"{x:.1f}" for x in r["camera_rates"])
        print(f"| {os.path.basename(r['model'].rstrip('/'))} | {r['layout']} | {r['start']} | {r['first_result_s']:.2f} | "
              f"{r['encoder_median']:.1f} | {r['localization_median']} | {r['rate']:.1f} | {per_camera} | "
              f"{r['sent']} | {r['received']} | {r['dropped']} | {r['encoder_p99']:.1f} | {r['latency_p50']:.1f} | "
              f"{r['latency_p99']:.1f} | {r['latency_p99'] / r['encoder_median']:.2f} | {r['cpu_percent']:.0f} | "
              f"{r['rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / r['rss_mb']:.2f} |")
    if args.cameras > 1:
        # The goals: one node with N cameras uses at most (1/N + 0.15) of the N
        # nodes' summed RSS and processes at least as many frames in total.
        for model in dict.fromkeys(r["model"] for r in rows):
            one, many = [r for r in rows if r["model"] == model][:2]
            budget = 1 / args.cameras + 0.15
            print(f"{os.path.basename(model.rstrip('/'))}: RSS one node / {args.cameras} nodes = "
                  f"{one['rss_mb'] / many['rss_mb']:.2f} (goal <= {budget:.2f}), peak "
                  f"{one['peak_rss_mb'] / many['peak_rss_mb']:.2f}; frames processed {one['processed']} vs "
                  f"{many['processed']} (goal: at least as many); frames per batch (mean) {one['frames_per_batch']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
