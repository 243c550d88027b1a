//! zoo.cfg as `zkd serve --config` reads it (`config::Config::parse_str`: Java Properties syntax,
//! ZooKeeper's keys and defaults), the properties splitter alone, and a `myid` file's text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use zkd::config::{parse_myid, parse_properties, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let props = parse_properties(text);
    for (k, v) in &props {
        assert!(!k.contains(['=', ':', ' ', '\t']), "key {k:?} holds a separator");
        assert_eq!(v.trim(), v, "value {v:?} is not trimmed");
    }
    // Written back as key=value lines, the pairs read the same, unless a pair needs Properties'
    // escapes to be written: a value ending in a backslash (it would continue onto the next
    // line), a key starting with '#' or '!' (a comment; it can be read from a continued line).
    if props.iter().all(|(k, v)| !v.ends_with('\\') && !k.starts_with(['#', '!'])) {
        let written: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        assert_eq!(parse_properties(&written), props, "{written:?}");
    }
    match Config::parse_str(text, Path::new(".")) {
        Ok((c, _warnings)) => {
            assert!(c.min_session_timeout_ms() <= c.max_session_timeout_ms());
            assert!(c.tick_time_ms > 0);
            let _ = c.four_letter_words_whitelist();
            let _ = c.to_conf_lines();
            if let Ok(s) = zkd::server::settings_from(&c) {
                assert_eq!(s.min_session_timeout_ms, c.min_session_timeout_ms());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = parse_myid(text);
});
