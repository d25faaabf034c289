//! The ABI's wire formats: property values and serialized header maps, decoded from what hosts
//! return and encoded for what the filter sends. Pure functions, so they are unit-tested
//! natively.
//!
//! Property values: Envoy returns integers, durations and timestamps as 8-byte
//! little-endian integers (nanoseconds for times); Kong's ngx_wasm_module returns them as
//! decimal strings (`"200"`). Both are accepted without knowing the host: a value made only of
//! ASCII digits is read as decimal, otherwise 8 bytes are read as a little-endian integer.
//! (An 8-byte integer is made only of ASCII digits only from 0x3030303030303030, beyond any
//! status, flag set, duration or timestamp before the year 2078.) Times and durations differ in
//! unit as well (Envoy: nanoseconds; Kong: seconds with a fraction, [`decimal_seconds_ns`]),
//! so [`super::differences`] decodes them knowing the host.

/// An integer property, in either encoding.
pub fn integer(bytes: &[u8]) -> Option<u64> {
    if !bytes.is_empty() && bytes.len() <= 20 && bytes.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(bytes).ok()?.parse().ok();
    }
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(array))
}

/// A time or duration Kong gives in seconds with a decimal fraction (`"0.250"`,
/// `"1795000000.123"`), in nanoseconds. At most 12 digits of seconds, 9 of fraction.
pub fn decimal_seconds_ns(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits =
        |part: &str, max: usize| part.len() <= max && part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole, 12) || !digits(fraction, 9) {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    let mut nanos: u64 = 0;
    for position in 0..9 {
        let digit = fraction
            .as_bytes()
            .get(position)
            .map_or(0, |b| u64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A string property; invalid UTF-8 is replaced, never fatal.
pub fn string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A header map as proxy-wasm serializes it: a little-endian u32 count, then a (key size,
/// value size) pair of u32 per entry, then each key and value followed by a NUL byte. Invalid
/// UTF-8 is replaced (a header value may carry any byte); a malformed buffer is `None`.
pub fn header_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for index in 0..count {
        let sizes = index.checked_mul(8)?.checked_add(4)?;
        let key_size = usize::try_from(read_u32(bytes, sizes)?).ok()?;
        let value_size = usize::try_from(read_u32(bytes, sizes.checked_add(4)?)?).ok()?;
        let (key, after_key) = terminated(bytes, data, key_size)?;
        let (value, after_value) = terminated(bytes, after_key, value_size)?;
        data = after_value;
        pairs.push((string(key), string(value)));
    }
    Some(pairs)
}

/// The `size` bytes at `at`, which must be followed by a NUL; and where the next item starts.
fn terminated(bytes: &[u8], at: usize, size: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(size)?;
    let item = bytes.get(at..end)?;
    (*bytes.get(end)? == 0).then_some((item, end.checked_add(1)?))
}

/// A header map serialized as the ABI expects (the inverse of [`header_map`]).
pub fn encode_header_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size: usize = pairs
        .iter()
        .map(|(name, value)| name.len() + value.len() + 10)
        .sum();
    let mut bytes = Vec::with_capacity(size + 4);
    bytes.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(0).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_le_bytes());
        bytes.extend_from_slice(&u32::try_from(value.len()).unwrap_or(0).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_binary_integers() {
        assert_eq!(integer(&200u64.to_le_bytes()), Some(200));
        assert_eq!(integer(&0x20u64.to_le_bytes()), Some(0x20));
        let now_ns = 1_795_000_000_000_000_000u64;
        assert_eq!(integer(&now_ns.to_le_bytes()), Some(now_ns));
    }

    #[test]
    fn kong_string_integers() {
        assert_eq!(integer(b"200"), Some(200));
        assert_eq!(integer(b"20000000"), Some(20_000_000));
        assert_eq!(integer(b"0"), Some(0));
    }

    #[test]
    fn kong_decimal_seconds() {
        assert_eq!(decimal_seconds_ns(b"0.250"), Some(250_000_000));
        assert_eq!(decimal_seconds_ns(b"0.000"), Some(0));
        assert_eq!(decimal_seconds_ns(b"12"), Some(12_000_000_000));
        assert_eq!(
            decimal_seconds_ns(b"1795000000.123"),
            Some(1_795_000_000_123_000_000)
        );
        assert_eq!(decimal_seconds_ns(b"1.123456789"), Some(1_123_456_789));
        for bad in [
            &b""[..],
            b".5",
            b"1.2.3",
            b"-1",
            b"1e3",
            b"1.1234567891",
            b"9999999999999",
        ] {
            assert_eq!(decimal_seconds_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        assert_eq!(integer(b""), None);
        assert_eq!(integer(b"12a"), None);
        assert_eq!(integer(&[1, 2, 3]), None);
        assert_eq!(integer(b"999999999999999999999"), None);
        assert_eq!(string(&[0x66, 0xff, 0x6f]), "f\u{fffd}o");
    }

    /// Serializes a map the way hosts do.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (key, value) in pairs {
            out.extend((key.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (key, value) in pairs {
            out.extend(*key);
            out.push(0);
            out.extend(*value);
            out.push(0);
        }
        out
    }

    #[test]
    fn encoding_round_trips() {
        let pairs = [("content-type", "application/json"), ("x-empty", "")];
        let bytes = encode_header_map(&pairs);
        assert_eq!(
            bytes,
            serialize(&[(b"content-type", b"application/json"), (b"x-empty", b"")])
        );
        let decoded = header_map(&bytes).unwrap();
        assert_eq!(
            decoded,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-empty".to_string(), String::new()),
            ]
        );
        assert_eq!(encode_header_map(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn header_maps_decode_with_invalid_utf8_replaced() {
        let bytes = serialize(&[
            (b":status", b"200"),
            (b"x-bin", &[0x61, 0xfe]),
            (b"empty", b""),
        ]);
        assert_eq!(
            header_map(&bytes),
            Some(vec![
                (":status".into(), "200".into()),
                ("x-bin".into(), "a\u{fffd}".into()),
                ("empty".into(), "".into()),
            ])
        );
        assert_eq!(header_map(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_header_maps_are_none() {
        let good = serialize(&[(b"k", b"v")]);
        for cut in 1..good.len() {
            assert_eq!(header_map(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(header_map(&[0xff, 0xff, 0xff, 0xff]), None);
        let mut lying = good.clone();
        lying[4] = 200; // key size beyond the buffer
        assert_eq!(header_map(&lying), None);
        let mut unterminated = good.clone();
        let last = unterminated.len() - 1;
        unterminated[last] = b'x'; // the value's NUL replaced
        assert_eq!(header_map(&unterminated), None);
    }
}
