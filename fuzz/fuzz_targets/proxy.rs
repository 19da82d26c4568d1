//! Fuzz target `proxy`: the checks are [`tickcast_fuzz::proxy::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::proxy::check(data));
