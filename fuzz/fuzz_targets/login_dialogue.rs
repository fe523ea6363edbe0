#![no_main]
//! Fuzz target `login_dialogue`: see `pacc_proto::fuzz::login_dialogue`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::login_dialogue(data));
