//! Helpers shared by the fuzz targets in `fuzz_targets/`.

/// Shortest run of base64 characters treated as possible secret material.
pub const MIN_RUN: usize = 16;

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// The first `MIN_RUN`-byte window of base64 characters (`A-Z a-z 0-9 + / =`) in `message` that also
/// occurs in `input`, if any.
///
/// A message contains a base64-looking substring of the input of `MIN_RUN` or more characters exactly
/// when one of its maximal base64 runs has a `MIN_RUN`-byte window that occurs in the input, so only
/// the (short) message is scanned window by window and the input is never scanned for runs itself.
pub fn echoed_run<'m>(message: &'m str, input: &[u8]) -> Option<&'m str> {
    let bytes = message.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !is_base64_char(bytes[start]) {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|&b| !is_base64_char(b))
            .map_or(bytes.len(), |len| start + len);
        if end - start >= MIN_RUN {
            for at in start..=end - MIN_RUN {
                let window = &bytes[at..at + MIN_RUN];
                if input.windows(MIN_RUN).any(|w| w == window) {
                    // Base64 characters are ASCII, so the window lies on char boundaries.
                    return Some(&message[at..at + MIN_RUN]);
                }
            }
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::echoed_run;

    #[test]
    fn finds_only_long_base64_runs_from_the_input() {
        let input = b"x: MIIEowIBAAKCAQEAtyu1, y: short";
        assert_eq!(
            echoed_run("bad value MIIEowIBAAKCAQEAtyu1!", input),
            Some("MIIEowIBAAKCAQEA")
        );
        assert_eq!(echoed_run("bad value short", input), None);
        assert_eq!(echoed_run("MIIEowIBAAKCAQE", input), None);
        assert_eq!(echoed_run("ZZZZZZZZZZZZZZZZZZZZ", input), None);
    }
}
