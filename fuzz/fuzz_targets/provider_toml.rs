#![no_main]
//! Fuzz target `provider_toml`: see `pacc_proto::fuzz::provider_toml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pacc_proto::fuzz::provider_toml(data));
