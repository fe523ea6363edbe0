#![no_main]
//! Fuzz target `probe_dialogue`: see `pacc_proto::fuzz::probe_dialogue`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::probe_dialogue(data));
