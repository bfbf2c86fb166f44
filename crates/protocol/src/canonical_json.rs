//! Canonical JSON: the one byte form of every outcome that instances compare.
//!
//! Agreement compares bytes, so an outcome must have exactly one encoding:
//! compact, keys in the order the caller writes them, integers in shortest
//! decimal form, strings escaping only `"`, `\` and control characters
//! (`\u00xx`, lowercase hex). A general-purpose serializer leaves too much
//! freedom (escape choices, key order of maps) to rely on across builds.

/// Writes one JSON object with keys in call order.
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    has_fields: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self {
            out,
            has_fields: false,
        }
    }

    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_string(self.out, value);
        self
    }

    pub fn integer(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        // itoa writes the shortest decimal form without core::fmt's
        // machinery: an outcome has several integers, on every instance.
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// Embeds bytes that already are one canonical JSON value.
    pub fn raw(&mut self, key: &str, canonical_value: &[u8]) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(canonical_value);
        self
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }

    fn key(&mut self, key: &str) {
        if self.has_fields {
            self.out.push(b',');
        }
        self.has_fields = true;
        write_string(self.out, key);
        self.out.push(b':');
    }
}

fn write_string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    // Runs of bytes that need no escape are copied whole. Multi-byte UTF-8
    // passes through unchanged: the input is a str.
    let bytes = value.as_bytes();
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        if !matches!(byte, b'"' | b'\\' | 0x00..=0x1f) {
            continue;
        }
        out.extend_from_slice(&bytes[run_start..index]);
        run_start = index + 1;
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(build: impl FnOnce(&mut ObjectWriter<'_>)) -> String {
        let mut out = Vec::new();
        let mut writer = ObjectWriter::new(&mut out);
        build(&mut writer);
        writer.finish();
        String::from_utf8(out).expect("canonical JSON is UTF-8")
    }

    #[test]
    fn keys_keep_call_order_and_output_is_compact() {
        let text = object(|o| {
            o.string("z", "last-first")
                .integer("a", -42)
                .raw("r", b"{}");
        });
        assert_eq!(text, r#"{"z":"last-first","a":-42,"r":{}}"#);
    }

    #[test]
    fn escapes_only_quote_backslash_and_control_characters() {
        let text = object(|o| {
            o.string("s", "q\"b\\n\n\u{1f}/é\u{7f}");
        });
        assert_eq!(text, "{\"s\":\"q\\\"b\\\\n\\u000a\\u001f/é\u{7f}\"}");
    }

    #[test]
    fn output_is_valid_json_that_round_trips() {
        let original = "tab\tquote\"slash\\emoji😀";
        let text = object(|o| {
            o.string("k", original).integer("min", i64::MIN);
        });
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["k"], original);
        assert_eq!(parsed["min"], i64::MIN);
    }

    proptest::proptest! {
        /// Any string reads back as itself, and only `"`, `\` (one byte
        /// more each) and control characters (five more) are escaped.
        #[test]
        fn any_string_round_trips_escaping_only_what_it_must(value in "\\PC*|[\"\\\\\\x00-\\x1f a-z]*") {
            let text = object(|o| {
                o.string("k", &value).integer("n", 7);
            });
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            proptest::prop_assert_eq!(parsed["k"].as_str(), Some(value.as_str()));
            let escaped_extra: usize = value
                .bytes()
                .map(|byte| match byte {
                    b'"' | b'\\' => 1,
                    0x00..=0x1f => 5,
                    _ => 0,
                })
                .sum();
            proptest::prop_assert_eq!(text.len(), r#"{"k":"","n":7}"#.len() + value.len() + escaped_extra);
        }
    }
}
