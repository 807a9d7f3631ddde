#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| framescale_fuzz::frame_line(data));
