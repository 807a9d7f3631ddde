#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| framescale_fuzz::cri_records(data));
