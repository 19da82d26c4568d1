//! Fuzz target `deflate`: the checks are [`tickcast_fuzz::deflate::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::deflate::check(data));
