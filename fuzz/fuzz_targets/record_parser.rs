//! Fuzzes what `sealform decrypt` does with a decrypted record: the MIME
//! parser (`mime::parse`) and the file names it derives. The plaintext of
//! a record is hostile input: anyone holding the public key can make one.
//!
//! Property: nothing panics (a refusal is an `Err`); every name decrypt would write is a single,
//! harmless path component.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealform::mime::{parse, safe_file_name};

fn assert_safe(name: &str) {
    assert!(!name.is_empty(), "empty name");
    assert!(name != "." && name != "..", "dot name {name:?}");
    assert!(!name.starts_with('.'), "hidden name {name:?}");
    assert!(
        !name.chars().any(|c| c == '/' || c == '\\' || c.is_control()),
        "unsafe character in {name:?}"
    );
    assert!(name.len() <= 255, "name too long: {}", name.len());
}

fuzz_target!(|data: &[u8]| {
    // A record with too many parts is refused, which is fine.
    let Ok(parsed) = parse(data) else { return };
    for (name, _) in &parsed.attachments {
        assert_safe(&safe_file_name(name, "attachment"));
    }
    if let Some(r) = &parsed.receipt {
        assert_safe(&safe_file_name(r, "record"));
    }
    if let Some(f) = &parsed.form {
        assert_safe(&safe_file_name(f, "form"));
    }
});
