//! Fuzz target `token`: the checks are [`tickcast_fuzz::token::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::token::check(data));
