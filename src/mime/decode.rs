//! The content-transfer decodings the envelope parser undoes: base64 and
//! quoted-printable (the inverse of `encode.rs`). Every output buffer is
//! zeroized on drop: it holds plaintext.

use data_encoding::BASE64;
use zeroize::Zeroizing;

/// A base64 body (RFC 2045): whitespace skipped, padding only at the
/// very end, trailing bits zero; `None` when it is not valid base64.
pub(super) fn decode_base64(body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    // Sized up front: a collected `filter` grows by reallocation and would
    // leave unzeroized copies behind.
    let mut clean = Zeroizing::new(Vec::with_capacity(body.len()));
    clean.extend(body.iter().copied().filter(|b| !b.is_ascii_whitespace()));
    // Padding only at the very end: `BASE64` alone would also decode
    // concatenated padded blocks (`Qg==aXQ=`), which this decoder refused.
    if clean
        .iter()
        .position(|&b| b == b'=')
        .is_some_and(|i| i + 2 < clean.len())
    {
        return None;
    }
    let mut out = Zeroizing::new(vec![0; BASE64.decode_len(clean.len()).ok()?]);
    let len = BASE64.decode_mut(&clean, &mut out).ok()?;
    out.truncate(len);
    Some(out)
}

/// A quoted-printable body (RFC 2045): soft line breaks dropped, `=XX`
/// decoded, CRLF made LF; a stray `=` is kept as it is.
pub(super) fn decode_qp(body: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'=' {
            match (body.get(i + 1), body.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => i += 3,
                (Some(b'\n'), _) => i += 2,
                (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    let v = hex_val(h) * 16 + hex_val(l);
                    out.push(v);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        } else if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_bodies_decode_as_the_base64_crate_decoded_them() {
        use base64::Engine as _;
        // Whitespace anywhere is skipped; padding is required and only at
        // the very end; trailing bits must be zero.
        let table: &[(&[u8], Option<&[u8]>)] = &[
            (b"", Some(b"")),
            (b"Zm9v\r\nYg==", Some(b"foob")),
            (b" Zm 9v\tYmFy\n", Some(b"foobar")),
            (b"Qg==aXQ=", None),
            (b"QQ==QQ==", None),
            (b"Zm9v====", None),
            (b"Qg", None),
            (b"Qg=", None),
            (b"Qh==", None),
            (b"-_8=", None),
        ];
        for (input, want) in table {
            let got = decode_base64(input);
            assert_eq!(got.as_deref().map(Vec::as_slice), *want, "{input:?}");
        }
        let alphabet = b"AQgw+/=Zz09 \n";
        proptest::proptest!(|(picks in proptest::collection::vec(0..alphabet.len(), 0..14))| {
            let input: Vec<u8> = picks.iter().map(|&i| alphabet[i]).collect();
            let clean: Vec<u8> = input.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            let before = base64::engine::general_purpose::STANDARD.decode(&clean).ok();
            proptest::prop_assert_eq!(decode_base64(&input).map(|v| v.to_vec()), before);
        });
    }
}
