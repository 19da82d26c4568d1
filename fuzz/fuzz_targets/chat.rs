//! Fuzz target `chat`: the checks are [`tickcast_fuzz::chat::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::chat::check(data));
