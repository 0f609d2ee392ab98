#!/usr/bin/env python3
"""Benchmark of clip_node on the wire: a Cyclone DDS peer publishes 640x480 rgb8 frames at
30 Hz for 60 s; the table shows, per model, the time from launching the node to its first
Classification (frames offered at 10 Hz from the moment its subscription matches), the node's processed rate, dropped frames,
receive -> publish latency (p50/p99, as the node measures it in ~/matches) next to the image
encoder's median time (the target: p99 <= 1.5x the encoder median), the node's CPU use,
its RSS at the end of the run and its peak RSS (VmHWM, model loading included).

    python3 tests/node/bench_node.py                      # re-runs itself under private-net
    python3 tests/node/bench_node.py --duration 20 --models models/tabletop

Models: the bundled default model (models/tabletop, once it exists) and random-init
ViT-B/32, made with
    python3 models/export.py --random-init --arch vit-b-32 --seed 0 --out models/.cache/random-vit-b-32-seed0
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


def bench_model(args, model, work):
    import ros_peer as rp

    params = {
        "model_dir": model, "labels": PHRASES, "image_transport": "raw", "threads": args.threads,
        "diagnostics_period": 1.0, "cache_dir": os.path.join(work, "cache"),
    }
    for extra in args.param:
        name, value = extra.split(":=", 1)
        params[name] = value
    launched = time.monotonic()
    node = rp.NodeProcess(rp.node_command(args.node, params), os.path.join(work, "node.log"))
    peer = rp.Peer()
    results = rp.Collector(peer.reader("/clip_node/classification", rp.Classification, rp.RELIABLE_DEEP_QOS))
    matches = rp.Collector(peer.reader("/clip_node/matches", rp.String, rp.RELIABLE_DEEP_QOS))
    diagnostics = rp.Diagnostics(peer, "clip_node: clip")
    writer = peer.writer("/image", rp.Image, rp.SENSOR_QOS)
    rng = random.Random(0)
    w, h = args.width, args.height
    images = [bytes(rng.getrandbits(8) for _ in range(w * h * 3)) if i == 0 else None for i in range(4)]
    for i in range(1, 4):  # cheap variations of one random image
        images[i] = images[0][i * 997:] + images[0][:i * 997]
    try:
        # Start-up: frames at 10 Hz from the moment the node's subscription is matched;
        # the time from launching the process to the first Classification.
        rp.wait_matched(writer, "/image", timeout=300)
        while not results.poll():
            node.check_alive()
            if time.monotonic() - launched > 300:
                raise rp.Failure("no result within 300 s of start")
            writer.write(rp.Image(header=rp.Header(stamp=rp.Time(0, 0), frame_id="startup"), height=h,
                                  width=w, encoding="rgb8", step=w * 3, data=images[0]))
            time.sleep(0.1)
        first_result_s = time.monotonic() - launched
        diagnostics.wait("the node to start", lambda v: v.get("state") == "running", timeout=300)
        # Warm-up (not measured): the first frames pay one-time costs.
        for i in range(5):
            writer.write(rp.Image(header=rp.Header(stamp=rp.Time(1, i)), height=h, width=w, encoding="rgb8",
                                  step=w * 3, data=images[i % 4]))
            time.sleep(0.2)
        time.sleep(1.0)
        results.poll()
        matches.poll()
        results.items.clear()
        matches.items.clear()
        start_diag = dict(diagnostics.wait("diagnostics after the warm-up", lambda v: True))
        sent_at = {}
        cpu0, t0 = proc_cpu_seconds(node.proc.pid), time.monotonic()
        period = 1.0 / args.rate
        n = int(args.duration * args.rate)
        for i in range(n):
            target = t0 + i * period
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            stamp = (100 + i // 1000, (i % 1000) * 1000)
            msg = rp.Image(header=rp.Header(stamp=rp.Time(*stamp), frame_id="bench"), height=h, width=w,
                           encoding="rgb8", step=w * 3, data=images[i % 4])
            sent_at[stamp] = time.monotonic()
            writer.write(msg)
            if i % 10 == 0:
                results.poll()
        t1 = time.monotonic()
        cpu1 = proc_cpu_seconds(node.proc.pid)
        time.sleep(2.0)
        results.poll()
        matches.poll()
        end_diag = diagnostics.wait("final diagnostics", lambda v: True)
        time.sleep(1.2)
        end_diag = diagnostics.poll()
        node.check_alive()
        rss = proc_memory_mb(node.proc.pid, "VmRSS")
        peak_rss = proc_memory_mb(node.proc.pid, "VmHWM")
    finally:
        node.stop()

    m = [json.loads(x.data) for x in matches.items]
    m = [x for x in m if x["frame_id"] == "bench"]
    latency = [x["latency_ms"] for x in m]
    encoder = [x["encoder_ms"] for x in m]

    def count(key):
        return int(end_diag[key]) - int(start_diag[key])

    return {
        "model": model,
        "sent": len(sent_at),
        "received": count("frames received"),
        "processed": count("frames processed"),
        "dropped": count("frames dropped"),
        "rejected": count("frames rejected"),
        "rate": count("frames processed") / (t1 - t0),
        "encoder_median": statistics.median(encoder) if encoder else float("nan"),
        "encoder_p99": quantile(encoder, 0.99),
        "latency_p50": quantile(latency, 0.50),
        "latency_p99": quantile(latency, 0.99),
        "cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mb": rss,
        "peak_rss_mb": peak_rss,
        "results": len(results.items),
        "first_result_s": first_result_s,
        "cpu": start_diag.get("cpu", "unknown"),
        "kernels": start_diag.get("matrix kernels", "unknown"),
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
        print(f"benchmarking {model}: {args.width}x{args.height} rgb8 at {args.rate:g} Hz for {args.duration:g} s",
              file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as work:
            rows.append(bench_model(args, path, work))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    header = ("model", "first result s", "encoder median ms", "processed Hz", "sent", "received", "dropped",
              "encoder p99 ms", "latency p50 ms", "latency p99 ms", "p99 / encoder", "CPU %", "RSS MB", "peak RSS MB")
    for machine in sorted({(r["cpu"], r["kernels"]) for r in rows}):
        print("cpu: {}; engine: {}".format(*machine))
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(f"| {os.path.basename(r['model'].rstrip('/'))} | {r['first_result_s']:.2f} | "
              f"{r['encoder_median']:.1f} | {r['rate']:.1f} | "
              f"{r['sent']} | {r['received']} | {r['dropped']} | {r['encoder_p99']:.1f} | {r['latency_p50']:.1f} | {r['latency_p99']:.1f} | "
              f"{r['latency_p99'] / r['encoder_median']:.2f} | {r['cpu_percent']:.0f} | {r['rss_mb']:.0f} | "
              f"{r['peak_rss_mb']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
