//! The operations surface's parsers: an AdminServer/Prometheus HTTP request head as the listener
//! reads it (`admin::http::head_state` on every read, then `route`), the command name and query
//! the AdminServer dispatches on, and a four-letter word on the client port against a
//! `4lw.commands.whitelist`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::admin::http::{head_state, route, HeadState, Route, MAX_REQUEST_BYTES};
use zkd::admin::json::{primary_name, query_get};
use zkd::admin::words::allowed;
use zkd::config::Config;
use zkd::proto::frame::{read_length, FirstWord, FOUR_LETTER_WORDS};
use zkd_fuzz::Cuts;

/// `seed`: the sizes of the reads (None: 2 KiB, as the listener reads).
fn http(bytes: &[u8], seed: Option<u64>) {
    // Read as the listener reads: the state after each read; the head ends at most once.
    let mut cuts = seed.map(Cuts::new);
    let mut at = 0;
    let mut state = HeadState::Incomplete;
    while at < bytes.len() && state == HeadState::Incomplete {
        at = (at + cuts.as_mut().map_or(2048, Cuts::next_len)).min(bytes.len());
        state = head_state(&bytes[..at]);
        if state == HeadState::TooLarge {
            assert!(at > MAX_REQUEST_BYTES);
        }
    }
    if state != HeadState::Complete {
        return;
    }
    assert_eq!(head_state(bytes), HeadState::Complete, "more bytes un-ended a head");
    match route(&bytes[..at]) {
        Route::Get { path, query } => {
            assert!(!path.contains([' ', '?', '\n']), "{path:?}");
            assert!(!query.contains([' ', '\n']), "{query:?}");
            // As the AdminServer's handler: /commands/<name>?<query>.
            if let Some(name) = path.trim_end_matches('/').strip_prefix("/commands/") {
                if let Some(cmd) = primary_name(name) {
                    assert_eq!(primary_name(cmd), Some(cmd));
                }
            }
            for key in ["level", "traceMask", ""] {
                if let Some(v) = query_get(&query, key) {
                    assert!(!v.contains('&'));
                }
            }
        }
        Route::Bad | Route::MethodNotAllowed => {}
    }
}

fn four_letter(whitelist: &str, word: [u8; 4]) {
    let mut cfg = Config::embedded_default();
    cfg.four_letter_whitelist_raw = Some(whitelist.to_owned());
    let list = cfg.four_letter_words_whitelist();
    if let Some(l) = &list {
        assert!(l.iter().all(|w| !w.is_empty() && w.trim() == w));
    }
    let Ok(settings) = zkd::server::settings_from(&cfg) else { return };
    match read_length(word, 1 << 20, true) {
        Ok(FirstWord::FourLetter(w)) => {
            let w = std::str::from_utf8(&w).expect("a four-letter word is ASCII");
            assert!(FOUR_LETTER_WORDS.contains(&w));
            let ok = allowed(&settings, w);
            assert!(ok || w != "srvr", "srvr is always allowed");
        }
        Ok(FirstWord::Length(n)) => assert!(n <= 1 << 20),
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    if ctl & 1 == 0 {
        if ctl & 2 == 0 {
            http(rest, Some(ctl as u64));
        } else {
            // Past the head's bound: the listener must refuse, never grow without end.
            let mut big = vec![b'a'; MAX_REQUEST_BYTES];
            big.extend_from_slice(rest);
            http(&big, None);
        }
    } else if rest.len() >= 4 {
        let (word, list) = rest.split_at(4);
        four_letter(&String::from_utf8_lossy(list), [word[0], word[1], word[2], word[3]]);
    }
});
