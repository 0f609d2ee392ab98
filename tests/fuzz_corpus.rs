//! The fuzz corpora replayed on the stable toolchain: every file under
//! `fuzz/corpus/<target>/` (seeds from `fuzz/make_seeds.py`, plus inputs the fuzzer found
//! interesting) and `fuzz/regressions/<target>/` (inputs that once crashed, hung or ran out
//! of memory) goes through the same `clip_perception::fuzzing` harness the cargo-fuzz target
//! calls, so CI checks them without nightly. A harness panics on a bug; the test names the
//! file.

use std::path::{Path, PathBuf};

use clip_perception::fuzzing::TARGETS;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, harness: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing: every fuzz target needs its seed corpus"
    );
    let regressions = files(&root.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target} failed on {}",
            path.display()
        );
    }
}

#[test]
fn every_target_has_a_harness_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, _) in TARGETS {
        let file = root.join("fuzz_targets").join(format!("{target}.rs"));
        let source =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            source.contains(&format!("clip_perception::fuzzing::{target}(")),
            "{} does not call its harness",
            file.display()
        );
    }
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name), clip_perception::fuzzing::$name);
            }
        )*

        #[test]
        fn every_harness_is_replayed() {
            let replayed = [$(stringify!($name)),*];
            for (target, _) in TARGETS {
                assert!(replayed.contains(target), "no corpus replay for {target}");
            }
        }
    };
}

corpus_tests!(
    raw_frame,
    image_bytes,
    cdr_messages,
    param_request,
    bag_mcap,
    bag_sqlite,
    model_yaml,
    params_file,
    ros_args,
    text_clean,
    tokenizer,
);
