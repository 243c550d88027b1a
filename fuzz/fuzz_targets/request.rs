//! One request body under each client opcode (`proto::ops::Request::decode`, what a shard runs
//! on every packet of a session), and the ConnectRequest handshake. Whatever decodes must encode
//! back to bytes that decode to the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd_fuzz::{check_connect, check_request};

/// Every opcode ZooKeeper 3.8/3.9 defines, and a few it does not.
const OPCODES: &[i32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    100,
    101,
    102,
    103,
    104,
    105,
    106,
    107,
    -10,
    -11,
    -1,
    23,
    99,
    108,
    i32::MIN,
    i32::MAX,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    match OPCODES.get(sel as usize) {
        Some(&op) => check_request(op, body),
        None => check_connect(body),
    }
});
