#!/usr/bin/env python3
"""Soak test of clip_node: a Cyclone DDS peer plays a camera (640x480 rgb8 at 30 Hz, 1% of
the frames malformed) and changes the query every 10 s, for as long as asked; the node must
stay flat and consistent the whole time.

    python3 tests/node/soak.py --duration 3600                 # the hour (re-runs itself under private-net)
    python3 tests/node/soak.py --duration 120 --warmup 30      # the CI version (tests/node.rs)

Checks (exit 1 naming the first that failed; a JSON summary with --json):
  - the node lives the whole run and exits cleanly on SIGINT;
  - RSS after warm-up stays within --rss-tolerance (5%) of its value at the end of warm-up;
  - thread and open-file-descriptor counts after warm-up equal their values at the end of it
    (sampled halfway between queries, away from the moment a query loads the text encoder);
  - diagnostics: received = processed + dropped + rejected once the camera stops, every
    malformed frame the node received is counted as rejected (by reason), and the peer got
    one Classification per processed frame, none for a malformed frame;
  - no result mixes phrase sets: each Classification's labels are exactly one query's
    phrases, and the phrase sets appear in the order they were sent.
Every query is either one of three fixed phrase sets (text cache hits after the first time)
or one with a new phrase (the text encoder is loaded for it and freed after it).

Builds nothing: run `cargo build --release --bin clip_node` first (or pass --node).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BASE_SETS = [
    ["red cup", "blue ball", "green box"],
    ["yellow banana", "white phone"],
    ["black book", "orange bottle", "purple ball", "white can"],
]
# Malformed frames, in turn: each is a reason the node counts (`rejected <reason>`).
MALFORMED = ("short_step", "short_data", "bad_encoding", "zero_size")


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def proc_status(pid):
    """VmRSS (MB) and thread count of a process, and its open file descriptors."""
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_mb": rss, "threads": threads, "fds": fds}


def query_for(k):
    """The phrases of the k-th query: a fixed set, or (odd k) one with a new phrase."""
    phrases = list(BASE_SETS[k % len(BASE_SETS)])
    if k % 2 == 1:
        phrases.append(f"thing number {k}")
    return phrases


class Camera(threading.Thread):
    """Publishes frames at a fixed rate; every `1 / malformed` th frame is broken."""

    def __init__(self, rp, writer, args):
        super().__init__(daemon=True)
        self.rp, self.writer, self.args = rp, writer, args
        rng = random.Random(0)
        w, h = args.width, args.height
        base = bytes(rng.getrandbits(8) for _ in range(w * h * 3))
        self.images = [base[i * 997:] + base[:i * 997] for i in range(4)]
        self.stop_event = threading.Event()
        self.sent = 0
        self.malformed = {}
        self.malformed_stamps = set()
        self.error = None
        self.rng = random.Random(1)

    def message(self, i):
        rp, w, h = self.rp, self.args.width, self.args.height
        stamp = (100 + i // 1000, (i % 1000) * 1000)
        header = rp.Header(stamp=rp.Time(*stamp), frame_id="soak")
        image = dict(header=header, height=h, width=w, encoding="rgb8", step=w * 3,
                     data=self.images[i % 4])
        kind = None
        if self.rng.random() < self.args.malformed:
            kind = MALFORMED[sum(self.malformed.values()) % len(MALFORMED)]
            if kind == "short_step":
                image["step"] = w * 3 - 1
            elif kind == "short_data":
                image["data"] = image["data"][: len(image["data"]) // 2]
            elif kind == "bad_encoding":
                image["encoding"] = "not-an-encoding"
            elif kind == "zero_size":
                image.update(width=0, height=0, step=0, data=b"")
        return stamp, kind, rp.Image(**image)

    def run(self):
        try:
            period = 1.0 / self.args.rate
            t0 = time.monotonic()
            i = 0
            while not self.stop_event.is_set():
                target = t0 + i * period
                now = time.monotonic()
                if target > now:
                    time.sleep(target - now)
                stamp, kind, msg = self.message(i)
                if kind:
                    self.malformed[kind] = self.malformed.get(kind, 0) + 1
                    self.malformed_stamps.add(stamp)
                self.writer.write(msg)
                self.sent += 1
                i += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


def check_order(results, sent_sets):
    """Each result's phrase set is one query's, in the order the queries were sent."""
    position = 0
    for labels in results:
        while position < len(sent_sets) and sent_sets[position] != labels:
            position += 1
        if position == len(sent_sets):
            return f"a result with phrases {sorted(labels)} matches no query sent at or after the previous result's"
    return None


def soak(args, work):
    import ros_peer as rp
    from ros_peer import check

    params = {
        "model_dir": args.model, "labels": BASE_SETS[0], "image_transport": "raw",
        "threads": args.threads, "diagnostics_period": 1.0, "cache_dir": os.path.join(work, "cache"),
    }
    if args.precision:
        params["precision"] = args.precision
    node = rp.NodeProcess(rp.node_command(args.node, params), os.path.join(work, "node.log"))
    peer = rp.Peer()
    results = rp.Collector(peer.reader("/clip_node/classification", rp.Classification, rp.RELIABLE_DEEP_QOS))
    diagnostics = rp.Diagnostics(peer, "clip_node: clip")
    writer = peer.writer("/image", rp.Image, rp.SENSOR_QOS)
    query_writer = peer.writer("/clip_node/query", rp.String, rp.RELIABLE_QOS)
    summary = {"duration_s": args.duration, "rate_hz": args.rate, "size": f"{args.width}x{args.height}",
               "malformed_fraction": args.malformed, "node": args.node, "model": args.model,
               "precision": args.precision or "bundle default", "threads": args.threads}
    camera = Camera(rp, writer, args)
    samples = []
    result_sets = []
    mixed = []
    classified_malformed = 0
    sent_sets = [sorted(BASE_SETS[0])]
    try:
        diagnostics.wait("the node to start", lambda v: v.get("state") == "running", timeout=300)
        rp.wait_matched(writer, "/image", timeout=60)
        rp.wait_matched(query_writer, "/clip_node/query", timeout=60)
        log(f"node running; camera {args.width}x{args.height} at {args.rate:g} Hz for {args.duration:g} s")
        t0 = time.monotonic()
        camera.start()
        # Samples fall halfway between queries: a query may load the text encoder (files
        # open, threads busy for a moment), which is not what a leak looks like.
        next_sample = t0 + args.query_period / 2
        next_query = t0 + args.query_period
        queries = 0
        warm_sample = None

        def drain():
            nonlocal classified_malformed
            for c in results.poll():
                labels = sorted(h.class_id for h in c.results)
                result_sets.append(labels)
                if rp.stamp_of(c.header) in camera.malformed_stamps:
                    classified_malformed += 1
            results.items.clear()

        while True:
            now = time.monotonic()
            if now - t0 >= args.duration:
                break
            node.check_alive()
            check(camera.error is None, f"the camera thread failed: {camera.error!r}")
            drain()
            if now >= next_query:
                phrases = query_for(queries)
                query_writer.write(rp.String(data="; ".join(phrases)))
                sent_sets.append(sorted(phrases))
                queries += 1
                next_query += args.query_period
            if now >= next_sample:
                s = proc_status(node.proc.pid)
                s["t"] = round(now - t0, 1)
                samples.append(s)
                if warm_sample is None and now - t0 >= args.warmup:
                    warm_sample = s
                    log(f"warm-up done: {s}")
                if len(samples) % max(1, int(60 / args.sample_period)) == 0:
                    log(f"t={s['t']:.0f} s: RSS {s['rss_mb']:.1f} MB, {s['threads']} threads, {s['fds']} fds, "
                        f"{camera.sent} frames sent, {len(result_sets)} results")
                next_sample += args.sample_period
            time.sleep(0.01)
        camera.stop_event.set()
        camera.join()
        log(f"camera stopped after {camera.sent} frames; waiting for the node to settle")
        time.sleep(3.0)
        drain()
        count_before = diagnostics.count
        diagnostics.wait("diagnostics after the camera stopped", lambda v: diagnostics.count > count_before + 1,
                         timeout=20)
        final = dict(diagnostics.values)
        drain()
        node.check_alive()
        end_sample = proc_status(node.proc.pid)
    finally:
        camera.stop_event.set()
        code = node.stop()
    summary["exit_code"] = code

    def n(key):
        return int(final.get(key, 0))

    received, processed, dropped, rejected = (n("frames received"), n("frames processed"),
                                              n("frames dropped"), n("frames rejected"))
    summary.update({
        "frames_sent": camera.sent, "malformed_sent": camera.malformed, "received": received,
        "processed": processed, "dropped": dropped, "rejected": rejected,
        "rejected_by_reason": {k[len("rejected "):]: int(v) for k, v in final.items() if k.startswith("rejected ")},
        "results": len(result_sets), "queries_sent": len(sent_sets) - 1,
        "queries_applied": n("queries applied"), "queries_rejected": n("queries rejected"),
        "queries_superseded": n("queries superseded"),
        "text_encoder_calls": n("text encoder calls"), "text_cache_hits": n("text cache hits"),
        "warm": warm_sample, "end": end_sample,
    })
    after = [s for s in samples if warm_sample and s["t"] >= warm_sample["t"]] + [end_sample]
    failures = []
    if warm_sample is None:
        failures.append(f"the run ({args.duration:g} s) is not longer than the warm-up ({args.warmup:g} s)")
    else:
        base = warm_sample["rss_mb"]
        low, high = min(s["rss_mb"] for s in after), max(s["rss_mb"] for s in after)
        summary["rss_after_warmup_mb"] = {"at_warmup": base, "min": low, "max": high, "end": end_sample["rss_mb"]}
        summary["rss_drift"] = (high - base) / base
        if high > base * (1 + args.rss_tolerance) or low < base * (1 - args.rss_tolerance):
            failures.append(f"RSS left {base:.1f} MB +-{args.rss_tolerance:.0%} after warm-up: "
                            f"{low:.1f} .. {high:.1f} MB")
        for key in ("threads", "fds"):
            values = sorted({s[key] for s in after})
            summary[f"{key}_after_warmup"] = values
            if values != [warm_sample[key]]:
                failures.append(f"{key} changed after warm-up: {values} (at warm-up {warm_sample[key]})")
    if code != 0:
        failures.append(f"the node exited with {code} on SIGINT")
    if received != processed + dropped + rejected:
        failures.append(f"received {received} != processed {processed} + dropped {dropped} + rejected {rejected}")
    if received > camera.sent:
        failures.append(f"the node received {received} frames, more than the {camera.sent} sent")
    malformed_sent = sum(camera.malformed.values())
    if rejected > malformed_sent or (received == camera.sent and rejected != malformed_sent):
        failures.append(f"rejected {rejected} frames; {malformed_sent} malformed were sent "
                        f"({received} of {camera.sent} frames received)")
    if classified_malformed:
        failures.append(f"{classified_malformed} malformed frames got a Classification")
    if len(result_sets) != processed:
        failures.append(f"{len(result_sets)} Classifications for {processed} processed frames")
    order = check_order(result_sets, sent_sets)
    if order:
        failures.append(order)
    if summary["queries_applied"] + summary["queries_rejected"] + summary["queries_superseded"] != len(sent_sets) - 1:
        failures.append(f"{len(sent_sets) - 1} queries sent, but applied {summary['queries_applied']} + "
                        f"rejected {summary['queries_rejected']} + superseded {summary['queries_superseded']}")
    summary["samples"] = samples
    summary["failures"] = failures
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", default=os.path.join(ROOT, "target/release/clip_node"))
    parser.add_argument("--model", default=os.path.join(ROOT, "models/tabletop"))
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds the camera runs")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds after which RSS, threads and fds must stay put")
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--malformed", type=float, default=0.01, help="fraction of malformed frames")
    parser.add_argument("--query-period", type=float, default=10.0, help="seconds between queries")
    parser.add_argument("--sample-period", type=float, default=10.0,
                        help="seconds between /proc samples (a multiple of --query-period keeps them between queries)")
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="the node's encoder threads")
    parser.add_argument("--precision", choices=("int8", "fp32"), help="the node's image encoder (default: the bundle's)")
    parser.add_argument("--json", help="write the summary (and every /proc sample) to this file")
    args = parser.parse_args()

    if os.environ.get("PRIVATE_NET_INSIDE") != "1":
        tool = os.environ.get("CLIP_PRIVATE_NET") or os.path.join(ROOT, "..", "shared", "tools", "private-net")
        os.execv("/bin/bash", ["bash", tool, sys.executable] + sys.argv)
    sys.path.insert(0, HERE)
    if not os.path.exists(args.node):
        sys.exit(f"{args.node} not found: run `cargo build --release --bin clip_node` first")
    with tempfile.TemporaryDirectory() as work:
        try:
            summary = soak(args, work)
        except Exception as e:  # noqa: BLE001 - one line and the node's log
            log(f"FAILED: {e}")
            log_path = os.path.join(work, "node.log")
            if os.path.exists(log_path):
                with open(log_path, errors="replace") as f:
                    print(f.read()[-20000:], file=sys.stderr)
            sys.exit(1)
        if summary["failures"]:
            with open(os.path.join(work, "node.log"), errors="replace") as f:
                print(f.read()[-8000:], file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    brief = {k: v for k, v in summary.items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    if summary["failures"]:
        log("FAILED: " + "; ".join(summary["failures"]))
        sys.exit(1)
    log("passed")


if __name__ == "__main__":
    main()
