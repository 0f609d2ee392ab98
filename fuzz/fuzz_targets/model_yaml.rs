#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| clip_perception::fuzzing::model_yaml(data));
