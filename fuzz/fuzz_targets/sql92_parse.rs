//! Fuzzes the SQL92 filter parser and evaluator: any input must parse or fail with an error — never
//! panic, overflow the stack or hang — and a parsed filter must evaluate against any properties.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        ringmq::filter::sql92::check_input(s);
    }
});
