//! Fuzz target `ws_frames`: the checks are [`tickcast_fuzz::ws_frames::check`], shared with the replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tickcast_fuzz::ws_frames::check(data));
