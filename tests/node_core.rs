//! The node core without a transport (no DDS, no network): the frame policy (newest frame
//! wins, replaced frames counted as dropped), the atomic phrase switch, query checks, the
//! text cache, and bad frames, on the tiny fixture model with an `Outputs` that records.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clip_perception::node::messages::{
    Classification, Detections, DiagnosticStatus, FrameResult, Header, Heatmap, LabelInfo, Outputs,
    Stamp,
};
use clip_perception::node::{ImageInput, NodeCore, NodePlan, Pixels, RosArgs};

use crate::common::{copy_bundle, remove_int8, tiny_bundle};

#[derive(Default)]
struct Recorder {
    classifications: Mutex<Vec<Classification>>,
    matches: Mutex<Vec<FrameResult>>,
    /// The camera index each `matches` entry was published for.
    match_cameras: Mutex<Vec<usize>>,
    label_infos: Mutex<Vec<LabelInfo>>,
    diagnostics: Mutex<Vec<DiagnosticStatus>>,
    parameter_events: Mutex<Vec<Vec<(&'static str, serde_json::Value)>>>,
    detections: Mutex<Vec<Detections>>,
    heatmaps: Mutex<Vec<Heatmap>>,
}

impl Outputs for Recorder {
    fn classification(&self, _camera: usize, message: Classification) {
        self.classifications.lock().unwrap().push(message);
    }
    fn matches(&self, camera: usize, result: &FrameResult) {
        self.match_cameras.lock().unwrap().push(camera);
        self.matches.lock().unwrap().push(result.clone());
    }
    fn detections(&self, _camera: usize, message: Detections) {
        self.detections.lock().unwrap().push(message);
    }
    fn heatmap(&self, _camera: usize, message: Heatmap) {
        self.heatmaps.lock().unwrap().push(message);
    }
    fn label_info(&self, message: LabelInfo) {
        self.label_infos.lock().unwrap().push(message);
    }
    fn diagnostics(&self, _header: Header, statuses: Vec<DiagnosticStatus>) {
        self.diagnostics.lock().unwrap().extend(statuses);
    }
    fn parameters_changed(&self, _stamp: Stamp, changed: &[(&'static str, serde_json::Value)]) {
        self.parameter_events.lock().unwrap().push(changed.to_vec());
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn start(extra: &[&str], cache: &std::path::Path) -> (NodeCore, Arc<Recorder>) {
    start_model(&tiny_bundle(), extra, cache)
}

fn start_model(
    model: &std::path::Path,
    extra: &[&str],
    cache: &std::path::Path,
) -> (NodeCore, Arc<Recorder>) {
    let model = format!("model_dir:={}", model.display());
    let cache = format!("cache_dir:={}", cache.display());
    let mut args = vec![
        "--ros-args",
        "-p",
        model.as_str(),
        "-p",
        cache.as_str(),
        "-p",
        "threads:=1",
        "-p",
        "labels:=red cup; blue ball; green box",
    ];
    for e in extra {
        args.extend(["-p", e]);
    }
    let plan = NodePlan::from_args(&RosArgs::parse(args).unwrap()).unwrap();
    let recorder = Arc::new(Recorder::default());
    let core = NodeCore::start(plan.load_engine().unwrap(), recorder.clone());
    (core, recorder)
}

fn frame(sec: i32) -> ImageInput {
    let (w, h) = (96u32, 64u32);
    let data: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 7 + sec as u32 * 13) % 251) as u8)
        .collect();
    ImageInput::new(
        Header {
            stamp: Stamp { sec, nanosec: 0 },
            frame_id: format!("f{sec}"),
        },
        Pixels::Raw {
            width: w,
            height: h,
            step: w * 3,
            encoding: "rgb8".into(),
            is_bigendian: false,
            data,
        },
    )
}

fn label_set(c: &Classification) -> Vec<String> {
    let mut ids: Vec<String> = c.results.iter().map(|h| h.class_id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn the_newest_frame_wins_and_replaced_frames_count_as_dropped() {
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&[], cache.path());
    wait_until("LabelInfo at start", || core.ready());
    assert_eq!(rec.label_infos.lock().unwrap().len(), 1);
    for sec in 1..=40 {
        core.offer_image(0, frame(sec));
    }
    wait_until("every frame processed or dropped", || {
        let s = core.stats();
        s.cameras[0].processed + s.cameras[0].dropped == 40
    });
    let stats = core.stats();
    let results = rec.classifications.lock().unwrap().clone();
    assert_eq!(results.len() as u64, stats.cameras[0].processed);
    assert!(
        stats.cameras[0].dropped > 0,
        "40 frames offered at once, none dropped? {stats:?}"
    );
    assert_eq!(stats.cameras[0].received, 40);
    let secs: Vec<i32> = results.iter().map(|c| c.header.stamp.sec).collect();
    assert!(
        secs.windows(2).all(|w| w[0] < w[1]),
        "results out of order: {secs:?}"
    );
    assert_eq!(
        *secs.last().unwrap(),
        40,
        "the newest frame is always processed"
    );
    assert_eq!(results[0].header.frame_id, format!("f{}", secs[0]));
    assert_eq!(rec.matches.lock().unwrap().len(), results.len());
    core.shutdown();
}

#[test]
fn a_query_switches_phrases_atomically_and_bad_queries_keep_the_old_ones() {
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&["diagnostics_period:=0.05"], cache.path());
    let a: Vec<String> = ["blue ball", "green box", "red cup"]
        .map(String::from)
        .to_vec();
    let b: Vec<String> = ["coffee mug", "drawer handle"].map(String::from).to_vec();
    let calls_at_start = core.stats().text.encoder_calls;
    let mut sec = 0;
    let mut feed_until = |what: &str, done: &dyn Fn(&[Classification]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&rec.classifications.lock().unwrap()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            sec += 1;
            core.offer_image(0, frame(sec));
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    feed_until("results", &|r| r.len() >= 3);
    core.query("drawer handle\ncoffee mug".into());
    feed_until("results with the new phrases", &|r| {
        r.iter().filter(|c| label_set(c) == b).count() >= 3
    });
    let calls_after_b = core.stats().text.encoder_calls;
    assert!(calls_after_b > calls_at_start);
    core.query("red cup; blue ball; green box".into());
    feed_until("results with the old phrases again", &|r| {
        r.last().is_some_and(|c| label_set(c) == a)
    });
    assert_eq!(
        core.stats().text.encoder_calls,
        calls_after_b,
        "cached phrases cost an encoder call"
    );

    let huge = "x; ".repeat(clip_perception::node::core::MAX_QUERY_BYTES / 3 + 1);
    core.query(huge);
    let why = core.stats().last_query_rejection.unwrap();
    assert!(why.contains("over the limit of"), "{why}");
    let too_many = (0..65)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(";");
    for bad in [String::new(), " ; ".into(), too_many, "x".repeat(257)] {
        core.query(bad);
    }
    wait_until("the bad queries", || {
        let s = core.stats();
        s.queries_rejected + s.queries_superseded >= 5
    });
    assert_eq!(core.labels(), vec!["red cup", "blue ball", "green box"]);
    assert_eq!(core.stats().label_generation, 2);

    let results = rec.classifications.lock().unwrap().clone();
    let mut order = Vec::new();
    for c in &results {
        let set = label_set(c);
        assert!(set == a || set == b, "a result mixes phrase sets: {set:?}");
        if order.last() != Some(&set) {
            order.push(set);
        }
    }
    assert_eq!(order, vec![a.clone(), b.clone(), a.clone()]);
    let infos: Vec<Vec<String>> = rec
        .label_infos
        .lock()
        .unwrap()
        .iter()
        .map(|i| i.class_names.clone())
        .collect();
    assert_eq!(infos.len(), 3, "{infos:?}");
    assert_eq!(infos[1], vec!["drawer handle", "coffee mug"]);
    wait_until("a diagnostics message", || {
        !rec.diagnostics.lock().unwrap().is_empty()
    });
    core.shutdown();
}

#[test]
fn bad_frames_are_counted_by_reason_and_the_next_good_frame_is_processed() {
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&[], cache.path());
    let bad = |pixels: Pixels| ImageInput::new(Header::default(), pixels);
    let raw = |w: u32, h: u32, step: u32, encoding: &str, len: usize| Pixels::Raw {
        width: w,
        height: h,
        step,
        encoding: encoding.into(),
        is_bigendian: false,
        data: vec![0; len],
    };
    let cases = [
        (raw(64, 48, 192, "rgb8", 100), "data_too_short"),
        (raw(64, 48, 100, "rgb8", 100 * 48), "step_too_small"),
        (raw(64, 48, 192, "yuv422", 192 * 48), "unknown_encoding"),
        (raw(0, 0, 0, "rgb8", 0), "empty"),
        (raw(100_000, 100_000, 300_000, "rgb8", 10), "too_large"),
        (
            Pixels::Compressed {
                format: "jpeg".into(),
                data: vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3],
            },
            "undecodable",
        ),
    ];
    for (i, (pixels, reason)) in cases.into_iter().enumerate() {
        core.offer_image(0, bad(pixels));
        wait_until(reason, || {
            core.stats().cameras[0]
                .rejected
                .iter()
                .any(|(r, n)| r.name() == reason && *n == 1)
        });
        core.offer_image(0, frame(i as i32 + 1));
        wait_until("the next good frame", || {
            rec.classifications.lock().unwrap().len() == i + 1
        });
    }
    assert_eq!(core.stats().rejected_total(), 6);
    core.shutdown();
}

#[test]
fn a_malformed_frame_is_refused_on_arrival_and_never_pushes_out_the_waiting_frame() {
    // max_rate holds the frame thread for a second after each frame: the good frame offered
    // meanwhile waits in the queue, and the malformed one after it must not replace it.
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&["max_rate:=1.0"], cache.path());
    wait_until("the model", || core.ready());
    core.offer_image(0, frame(1));
    wait_until("the first result", || {
        rec.classifications.lock().unwrap().len() == 1
    });
    core.offer_image(0, frame(2));
    let mut short = frame(3);
    if let Pixels::Raw { data, .. } = &mut short.pixels {
        data.truncate(10);
    }
    core.offer_image(0, short);
    let stats = core.stats();
    assert_eq!(stats.rejected_total(), 1, "counted on arrival: {stats:?}");
    assert_eq!(stats.cameras[0].dropped, 0);
    wait_until("the waiting good frame's result", || {
        rec.classifications.lock().unwrap().len() == 2
    });
    assert_eq!(rec.classifications.lock().unwrap()[1].header.stamp.sec, 2);
    let stats = core.stats();
    assert_eq!(
        stats.cameras[0].received,
        stats.cameras[0].processed + stats.cameras[0].dropped + stats.rejected_total()
    );
    core.shutdown();
}

#[test]
fn max_rate_spaces_the_frames_out() {
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&["max_rate:=20.0"], cache.path());
    let started = Instant::now();
    let mut sec = 0;
    while rec.classifications.lock().unwrap().len() < 5 {
        sec += 1;
        core.offer_image(0, frame(sec));
        std::thread::sleep(Duration::from_millis(2));
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    // Five frames at most 20 per second take at least four intervals of 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert!(core.stats().cameras[0].dropped > 0);
    core.shutdown();
}

#[test]
fn precision_int8_on_a_bundle_without_it_stops_start_up() {
    let dir = copy_bundle(&tiny_bundle());
    remove_int8(dir.path());
    let model = format!("model_dir:={}", dir.path().display());
    let plan = |precision: &str| {
        let p = format!("precision:={precision}");
        NodePlan::from_args(
            &RosArgs::parse(["--ros-args", "-p", model.as_str(), "-p", p.as_str()]).unwrap(),
        )
        .unwrap()
    };
    let e = plan("int8")
        .load_engine()
        .err()
        .expect("int8 without an int8 graph");
    let message = e.to_string();
    assert!(
        message.contains("precision") && message.contains("files.image_encoder_int8"),
        "{message}"
    );
    // auto falls back to fp32.
    let setup = plan("auto").load_engine().unwrap();
    assert_eq!(setup.image.precision(), clip_perception::Precision::Fp32);
}

/// The results of a parameter set: Ok, or the refusal's reason.
fn set(
    core: &NodeCore,
    changes: &[(&str, serde_json::Value)],
    atomic: bool,
) -> Vec<Result<(), String>> {
    let changes = changes
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    core.set_parameters(changes, atomic)
}

#[test]
fn parameter_sets_apply_between_frames_or_are_refused_with_the_reason() {
    use serde_json::json;
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&[], cache.path());
    // Each parameter of a plain set on its own: the good ones apply, the bad ones say why.
    let results = set(
        &core,
        &[
            ("threshold", json!(0.0)),
            ("model_dir", json!("/tmp")),
            ("smoothing", json!(1.0)),
            ("no_such_parameter", json!(1)),
            ("top_k", json!("two")),
            ("top_k", json!(2)),
        ],
        false,
    );
    assert_eq!(results[0], Ok(()));
    assert!(
        results[1].as_ref().unwrap_err().contains("read-only"),
        "{results:?}"
    );
    assert!(
        results[2].as_ref().unwrap_err().contains("out of range"),
        "{results:?}"
    );
    assert!(
        results[3].as_ref().unwrap_err().contains("not declared"),
        "{results:?}"
    );
    assert!(
        results[4].as_ref().unwrap_err().contains("integer"),
        "{results:?}"
    );
    assert_eq!(results[5], Ok(()));
    let params = core.parameters();
    assert_eq!(
        (params.threshold, params.top_k, params.smoothing),
        (0.0, 2, 0.0)
    );
    assert_eq!(
        rec.label_infos.lock().unwrap().last().unwrap().threshold,
        0.0,
        "LabelInfo follows the threshold"
    );
    // The next frame is scored with the new policy: 2 results, matched at cosine >= 0.
    core.offer_image(0, frame(1));
    wait_until("a result", || {
        !rec.classifications.lock().unwrap().is_empty()
    });
    assert_eq!(rec.classifications.lock().unwrap()[0].results.len(), 2);
    let matches = rec.matches.lock().unwrap()[0].matches.clone();
    assert!(
        matches
            .labels
            .iter()
            .all(|m| m.matched == (m.cosine >= 0.0)),
        "{matches:?}"
    );

    // Atomic: one bad value and nothing changes, no event, no LabelInfo.
    let events = rec.parameter_events.lock().unwrap().len();
    let infos = rec.label_infos.lock().unwrap().len();
    let results = set(
        &core,
        &[
            ("labels", json!(["drawer handle"])),
            ("threshold", json!(2.0)),
        ],
        true,
    );
    assert_eq!(results.len(), 1);
    assert!(results[0].as_ref().unwrap_err().contains("`threshold`"));
    assert_eq!(core.labels(), ["red cup", "blue ball", "green box"]);
    assert_eq!(rec.parameter_events.lock().unwrap().len(), events);
    assert_eq!(rec.label_infos.lock().unwrap().len(), infos);

    // Atomic and good: new phrases and threshold in one swap, one event naming both.
    let results = set(
        &core,
        &[
            ("labels", json!("drawer handle; coffee mug")),
            ("threshold", json!(0.5)),
        ],
        true,
    );
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(core.labels(), ["drawer handle", "coffee mug"]);
    let event = rec.parameter_events.lock().unwrap().last().unwrap().clone();
    let names: Vec<&str> = event.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["labels", "threshold"]);
    let info = rec.label_infos.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        (info.class_names.clone(), info.threshold),
        (core.labels(), 0.5)
    );

    // A query is a set of `labels`: the parameter follows it.
    core.query("red cup\nblue ball".into());
    wait_until("the query applied", || {
        core.parameters().labels == ["red cup", "blue ball"]
    });
    assert_eq!(core.stats().queries_applied, 1);
    core.shutdown();
}

#[test]
fn a_query_sent_while_the_model_loads_applies_once_it_is_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let model = format!("model_dir:={}", tiny_bundle().display());
    let cache_arg = format!("cache_dir:={}", cache.path().display());
    let args = RosArgs::parse([
        "--ros-args",
        "-p",
        &model,
        "-p",
        &cache_arg,
        "-p",
        "threads:=1",
        "-p",
        "labels:=red cup; blue ball",
    ])
    .unwrap();
    let plan = NodePlan::from_args(&args).unwrap();
    let recorder = Arc::new(Recorder::default());
    let core = NodeCore::start_loading(plan, recorder.clone());
    // Loading takes far longer than this: the query and a frame arrive during it.
    core.query("drawer handle; coffee mug".into());
    core.offer_image(0, frame(7));
    assert!(
        !core.ready(),
        "the model loaded faster than a channel send?"
    );
    assert!(
        core.labels().is_empty(),
        "no phrases before the model is loaded"
    );
    wait_until("the frame scored", || {
        !recorder.classifications.lock().unwrap().is_empty()
    });
    wait_until("the query applied", || core.stats().queries_applied == 1);
    assert_eq!(core.labels(), ["drawer handle", "coffee mug"]);
    let infos = recorder.label_infos.lock().unwrap().clone();
    assert_eq!(
        infos[0].class_names,
        ["red cup", "blue ball"],
        "the start phrases first"
    );
    assert_eq!(infos.last().unwrap().class_names, core.labels());
    assert_eq!(core.start_failure(), None);
    core.shutdown();
}

#[test]
fn a_model_that_fails_to_load_is_reported_and_nothing_runs() {
    let dir = copy_bundle(&tiny_bundle());
    remove_int8(dir.path());
    let model = format!("model_dir:={}", dir.path().display());
    let args = RosArgs::parse(["--ros-args", "-p", &model, "-p", "precision:=int8"]).unwrap();
    let plan = NodePlan::from_args(&args).unwrap();
    let core = NodeCore::start_loading(plan, Arc::new(Recorder::default()));
    wait_until("the failure reported", || core.start_failure().is_some());
    let why = core.start_failure().unwrap();
    assert!(why.contains("`precision`"), "{why}");
    assert!(!core.ready());
    core.shutdown();
}

#[test]
fn frame_policy_every_scores_each_frame_in_order_until_the_queue_is_full() {
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(&["frame_policy:=every", "queue_size:=100"], cache.path());
    for sec in 1..=40 {
        core.offer_image(0, frame(sec));
    }
    wait_until("every frame processed", || {
        core.stats().cameras[0].processed == 40
    });
    let secs: Vec<i32> = rec
        .classifications
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.header.stamp.sec)
        .collect();
    assert_eq!(secs, (1..=40).collect::<Vec<_>>(), "every frame, in order");
    assert_eq!(core.stats().cameras[0].dropped, 0);

    // A small queue drops what does not fit, and counts it.
    assert_eq!(
        set(&core, &[("queue_size", serde_json::json!(2))], false),
        vec![Ok(())]
    );
    for sec in 41..=80 {
        core.offer_image(0, frame(sec));
    }
    wait_until("every frame processed or dropped", || {
        let s = core.stats();
        s.cameras[0].processed + s.cameras[0].dropped == 80
    });
    assert!(core.stats().cameras[0].dropped > 0);
    // Back to newest at run time.
    assert_eq!(
        set(
            &core,
            &[("frame_policy", serde_json::json!("newest"))],
            false
        ),
        vec![Ok(())]
    );
    let refused = set(&core, &[("frame_policy", serde_json::json!("all"))], false);
    assert!(refused[0].as_ref().unwrap_err().contains("`frame_policy`"));
    core.shutdown();
}

#[test]
fn with_sim_time_max_rate_spaces_frames_on_the_ros_clock_and_stamps_follow_it() {
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start(
        &["use_sim_time:=true", "max_rate:=10", "frame_policy:=every"],
        cache.path(),
    );
    wait_until("loaded", || core.ready());
    assert!(core.uses_sim_time());
    assert_eq!(
        rec.label_infos.lock().unwrap()[0].header.stamp,
        Stamp { sec: 0, nanosec: 0 },
        "no /clock yet: ROS time is zero"
    );
    for sec in 1..=3 {
        core.offer_image(0, frame(sec));
    }
    wait_until("the first frame", || core.stats().cameras[0].processed == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        core.stats().cameras[0].processed,
        1,
        "the ROS clock stands still: so do frames"
    );
    core.set_sim_time(Stamp {
        sec: 0,
        nanosec: 100_000_000,
    });
    wait_until("the second frame, 0.1 s of ROS time later", || {
        core.stats().cameras[0].processed == 2
    });
    core.set_sim_time(Stamp {
        sec: 50,
        nanosec: 0,
    });
    wait_until("the third frame", || core.stats().cameras[0].processed == 3);
    let results = rec.classifications.lock().unwrap().clone();
    let secs: Vec<i32> = results.iter().map(|c| c.header.stamp.sec).collect();
    assert_eq!(secs, [1, 2, 3], "results keep their image's stamp");
    assert_eq!(
        core.now(),
        Stamp {
            sec: 50,
            nanosec: 0
        }
    );
    core.shutdown();
}

#[test]
fn a_bundle_file_replaced_while_running_is_refused_at_its_next_load_and_the_node_keeps_serving() {
    // The text encoder is loaded for a new phrase and freed after it (keep_text_encoder
    // false, the default). Swapped on disk in between, its next load must refuse the file
    // by checksum: the query is rejected with the reason, the old phrases and the image
    // encoder keep working, and putting the file back lets the same query through.
    let bundle = copy_bundle(&tiny_bundle());
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start_model(bundle.path(), &["diagnostics_period:=0.05"], cache.path());
    wait_until("the model", || core.ready());
    let text_encoder = bundle.path().join("text_encoder.onnx");
    let original = std::fs::read(&text_encoder).unwrap();
    std::fs::copy(bundle.path().join("image_encoder.onnx"), &text_encoder).unwrap();

    core.query("coffee mug; drawer handle".into());
    wait_until("the query's rejection", || {
        core.stats().queries_rejected == 1
    });
    let why = core.stats().last_query_rejection.unwrap();
    assert!(
        why.contains("text_encoder.onnx") && why.contains("sha256 mismatch"),
        "{why}"
    );
    assert_eq!(core.labels(), vec!["red cup", "blue ball", "green box"]);
    let before = rec.classifications.lock().unwrap().len();
    let mut sec = 0;
    wait_until("results with the old phrases", || {
        sec += 1;
        core.offer_image(0, frame(sec));
        std::thread::sleep(Duration::from_millis(5));
        let results = rec.classifications.lock().unwrap();
        results.len() > before + 2
    });
    for c in rec.classifications.lock().unwrap().iter() {
        assert_eq!(label_set(c), ["blue ball", "green box", "red cup"]);
    }

    std::fs::write(&text_encoder, original).unwrap();
    core.query("coffee mug; drawer handle".into());
    wait_until("the query applied once the file is whole", || {
        core.stats().queries_applied == 1
    });
    assert_eq!(core.labels(), vec!["coffee mug", "drawer handle"]);
    core.shutdown();
}

/// A SigLIP bundle (sigmoid scoring): the node's Classification score is each phrase's own
/// probability `sigmoid(logit_scale * cos + logit_bias)` (the `~/matches` probability and
/// score), thresholds and `matched` are in that unit, and the probabilities do not sum to
/// 1; on a CLIP bundle the score stays the clipped cosine.
#[test]
fn a_sigmoid_bundle_scores_and_thresholds_each_phrase_by_its_probability() {
    let cache = tempfile::tempdir().unwrap();
    let siglip = crate::common::root().join("tests/fixtures/tiny-siglip");
    let (core, rec) = start_model(&siglip, &["threshold:=0.5"], cache.path());
    wait_until("loaded", || core.ready());
    assert_eq!(rec.label_infos.lock().unwrap()[0].threshold, 0.5);
    for sec in 1..=3 {
        core.offer_image(0, frame(sec));
        wait_until("a result", || {
            rec.classifications.lock().unwrap().len() == sec as usize
        });
    }
    let bundle = clip_perception::ModelBundle::open(&siglip).unwrap();
    let scoring = bundle.spec().scoring;
    for (c, m) in rec
        .classifications
        .lock()
        .unwrap()
        .iter()
        .zip(rec.matches.lock().unwrap().iter())
    {
        let mut total = 0.0;
        for (h, l) in c.results.iter().zip(&m.matches.labels) {
            assert_eq!(h.class_id, l.phrase);
            let p = clip_perception::model::family::sigmoid(
                scoring.logit_scale * l.cosine + scoring.logit_bias,
            );
            assert!((l.probability - p).abs() < 1e-6, "{l:?} vs {p}");
            assert_eq!(l.score, l.probability);
            assert_eq!(h.score, f64::from(l.probability));
            assert_eq!(l.matched, l.probability >= 0.5);
            total += l.probability;
        }
        assert!(
            (total - 1.0).abs() > 1e-3,
            "sigmoids that sum to 1? {total}"
        );
    }
    core.shutdown();
}

fn cosines(result: &FrameResult) -> Vec<(String, f32)> {
    let mut c: Vec<(String, f32)> = result
        .matches
        .labels
        .iter()
        .map(|m| (m.phrase.clone(), m.cosine))
        .collect();
    c.sort_by(|a, b| a.0.cmp(&b.0));
    c
}

#[test]
fn each_camera_gets_its_own_results_and_smoothing_state_in_shared_batches() {
    let cache = tempfile::tempdir().unwrap();
    // The reference: each frame alone, one camera, no smoothing.
    let (single, single_rec) = start(&["frame_policy:=every"], cache.path());
    single.offer_image(0, frame(1));
    single.offer_image(0, frame(2));
    wait_until("both reference frames", || {
        single.stats().cameras[0].processed == 2
    });
    let reference: Vec<Vec<(String, f32)>> = single_rec
        .matches
        .lock()
        .unwrap()
        .iter()
        .map(cosines)
        .collect();
    single.shutdown();

    // Two cameras with heavy smoothing: a constant image keeps its cosine under smoothing,
    // so any state shared between the cameras would blend in the other camera's image.
    let (core, rec) = start(
        &[
            "cameras:=[head, wrist]",
            "smoothing:=0.9",
            "frame_policy:=every",
        ],
        cache.path(),
    );
    for _ in 0..10 {
        core.offer_image(0, frame(1));
        core.offer_image(1, frame(2));
    }
    wait_until("every frame of both cameras", || {
        let s = core.stats();
        s.cameras[0].processed == 10 && s.cameras[1].processed == 10
    });
    let results = rec.matches.lock().unwrap().clone();
    let cameras = rec.match_cameras.lock().unwrap().clone();
    assert_eq!(results.len(), 20);
    for (result, camera) in results.iter().zip(&cameras) {
        let (name, frame_id, want) = match camera {
            0 => ("head", "f1", &reference[0]),
            1 => ("wrist", "f2", &reference[1]),
            other => panic!("camera {other}"),
        };
        assert_eq!(result.camera.as_deref(), Some(name));
        assert_eq!(
            result.frame_id, frame_id,
            "a result on another camera's topic"
        );
        for ((phrase, got), (_, want)) in cosines(result).iter().zip(want) {
            assert!(
                (got - want).abs() < 1e-4,
                "{name} {phrase}: {got} in a batch with smoothing, {want} alone"
            );
        }
    }
    let stats = core.stats();
    assert_eq!(stats.batched_frames, 20);
    assert!(
        stats.batches < 20,
        "20 frames of two cameras waiting, never batched: {} passes",
        stats.batches
    );
}

#[test]
fn max_rate_holds_each_camera_back_on_its_own() {
    let cache = tempfile::tempdir().unwrap();
    let (core, _rec) = start(&["cameras:=[a, b]", "max_rate:=10.0"], cache.path());
    wait_until("the engine", || core.ready());
    let started = Instant::now();
    let mut sec = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        sec += 1;
        core.offer_image(0, frame(sec));
        core.offer_image(1, frame(sec));
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = core.stats();
    for (i, camera) in stats.cameras.iter().enumerate() {
        // 10 Hz for 1 s: 10 or 11 frames (the first is not held); a shared limit would
        // give each camera about 5.
        assert!(
            (8..=12).contains(&camera.processed),
            "camera {i}: {} frames processed in 1 s at max_rate 10",
            camera.processed
        );
    }
}

/// `localize` (live): each frame's matched phrases located as `locate` locates them on the
/// same pixels, `publish_heatmap` adds the maps side by side, and turning it off stops both.
#[test]
fn localize_publishes_the_matched_phrases_where_locate_finds_them() {
    use clip_perception::locate::LocateSettings;
    use clip_perception::text::Prompts;
    let model = crate::common::root().join("models/tabletop");
    let scene = model.join("locate/scene2_001.jpg");
    let image = clip_perception::image::load_image_file(&scene).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (core, rec) = start_model(
        &model,
        &[
            "labels:=white bottle; green book; red cup",
            "threshold:=0.15",
            "localize:=true",
            "publish_heatmap:=true",
        ],
        cache.path(),
    );
    wait_until("the model", || core.ready());
    let input = |sec: i32| {
        ImageInput::new(
            Header {
                stamp: Stamp { sec, nanosec: 0 },
                frame_id: "cam".into(),
            },
            Pixels::Raw {
                width: image.width,
                height: image.height,
                step: image.width * 3,
                encoding: "rgb8".into(),
                is_bigendian: false,
                data: image.data.to_vec(),
            },
        )
    };
    core.offer_image(0, input(1));
    wait_until("detections", || !rec.detections.lock().unwrap().is_empty());
    // The same answer from the engine directly.
    let mut engine = clip_perception::ClipEngine::load(clip_perception::EngineOptions {
        model: Some(model.clone()),
        ..Default::default()
    })
    .unwrap();
    let phrases: Vec<String> = ["white bottle", "green book", "red cup"]
        .map(String::from)
        .to_vec();
    let labels = engine
        .label_matrix(&phrases, &Prompts::choose(None, None).unwrap())
        .unwrap();
    let want = engine
        .locate(&image, &labels, &LocateSettings::default())
        .unwrap();
    let got = rec.detections.lock().unwrap()[0].clone();
    assert_eq!(got.header.stamp.sec, 1);
    let matched: Vec<String> = rec.matches.lock().unwrap()[0]
        .matches
        .labels
        .iter()
        .filter(|m| m.matched)
        .map(|m| m.phrase.clone())
        .collect();
    // The two objects in view are matched, the red cup is not.
    assert_eq!(got.detections.len(), matched.len());
    assert!(
        !matched.contains(&"red cup".to_string()) && matched.len() == 2,
        "{matched:?}"
    );
    for d in &got.detections {
        let l = want
            .iter()
            .find(|l| phrases[l.index] == d.class_id)
            .unwrap();
        let b = l.bbox;
        assert_eq!(
            d.center,
            [(b.x0 + b.x1) as f64 / 2.0, (b.y0 + b.y1) as f64 / 2.0]
        );
        assert_eq!(d.size, [b.width() as f64, b.height() as f64]);
        assert!(
            (d.score - f64::from(l.score.clamp(0.0, 1.0))).abs() < 1e-5,
            "{d:?} {l:?}"
        );
    }
    // The maps: one per phrase side by side, in phrase order.
    let map = rec.heatmaps.lock().unwrap()[0].clone();
    let m0 = &want.iter().find(|l| l.index == 0).unwrap().map;
    assert_eq!(
        (map.width as usize, map.height as usize),
        (3 * m0.cols, m0.rows)
    );
    assert_eq!(map.values.len(), (map.width * map.height) as usize);
    for (a, b) in map.values[..m0.cols].iter().zip(&m0.values[..m0.cols]) {
        assert!((a - b).abs() < 1e-5);
    }
    // Diagnostics report the localisation time.
    wait_until("diagnostics with localization time", || {
        rec.diagnostics.lock().unwrap().iter().any(|s| {
            s.values
                .iter()
                .any(|(k, v)| k == "localization median (ms)" && v != "-")
        })
    });
    // Off (live): the next frame gets its Classification but no detections.
    let results = core.set_parameters(vec![("localize".into(), serde_json::json!(false))], false);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let before = rec.detections.lock().unwrap().len();
    core.offer_image(0, input(2));
    wait_until("the second frame", || {
        rec.matches.lock().unwrap().len() >= 2
    });
    assert_eq!(rec.detections.lock().unwrap().len(), before);
    core.shutdown();
}
