//! Canonical JSON: the one byte form of every outcome that instances compare.
//!
//! Agreement compares bytes, so an outcome must have exactly one encoding:
//! compact, keys in the order the caller writes them, integers in shortest
//! decimal form, strings escaping only `"`, `\` and control characters
//! (`\u00xx`, lowercase hex). A general-purpose serializer leaves too much
//! freedom (escape choices, key order of maps) to rely on across builds.

use std::io::Write as _;

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
        // Writing into a Vec cannot fail; no intermediate String per integer.
        write!(self.out, "{value}").expect("writing to a Vec never fails");
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
    out.push(b'"');
    for byte in value.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
            // Multi-byte UTF-8 passes through unchanged: the input is a str.
            _ => out.push(byte),
        }
    }
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
}
