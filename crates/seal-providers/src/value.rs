//! A secret's value as a provider returns it: text (AWS SecretString, a Vault KV secret as JSON)
//! or bytes (AWS SecretBinary). Held in `secrecy` boxes, so it is zeroized when dropped and its
//! `Debug` says only `[REDACTED]`; the bytes are reached only through the `expose_*` methods.
//!
//! A property that is a number, a boolean, an object or an array is text too (its compact JSON),
//! marked as such ([`SecretValue::json`]), so a caller that places values into a document (`seal
//! render`, as `vals eval` does) can keep its type.

use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::property::{PropertyError, pick_property};

/// A secret value, text or binary. No `Display`, a redacted `Debug`, zeroized on drop.
pub struct SecretValue(Repr);

enum Repr {
    Text(SecretString),
    /// The compact JSON of a property that is not a string (nor null).
    Json(SecretString),
    Binary(SecretBox<[u8]>),
}

impl SecretValue {
    /// A text value (copied into a zeroizing box).
    pub fn from_text(text: &str) -> Self {
        SecretValue(Repr::Text(SecretString::from(text)))
    }

    /// A text value taking ownership of `text` without copying it.
    pub fn from_string(text: String) -> Self {
        SecretValue(Repr::Text(SecretString::from(text)))
    }

    /// The compact JSON text of a property that is a number, a boolean, an object or an array.
    pub(crate) fn from_json(text: String) -> Self {
        SecretValue(Repr::Json(SecretString::from(text)))
    }

    /// The value's JSON when it is a property that is a number, a boolean, an object or an
    /// array (its text is that JSON); `None` for strings, whole secrets and binary values.
    pub fn json(&self) -> Option<&str> {
        match &self.0 {
            Repr::Json(text) => Some(text.expose_secret()),
            Repr::Text(_) | Repr::Binary(_) => None,
        }
    }

    /// A binary value taking ownership of `bytes` without copying them.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        SecretValue(Repr::Binary(SecretBox::from(bytes.into_boxed_slice())))
    }

    /// True for a binary value (AWS SecretBinary).
    pub fn is_binary(&self) -> bool {
        matches!(self.0, Repr::Binary(_))
    }

    /// The value's bytes (UTF-8 for text).
    pub fn expose_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Text(text) | Repr::Json(text) => text.expose_secret().as_bytes(),
            Repr::Binary(bytes) => bytes.expose_secret(),
        }
    }

    /// The value as text: always for a text value, for a binary one when it is UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Text(text) | Repr::Json(text) => Some(text.expose_secret()),
            Repr::Binary(bytes) => std::str::from_utf8(bytes.expose_secret()).ok(),
        }
    }

    /// One property of the value read as a JSON document (see [`pick_property`]). Binary values
    /// are read as JSON too, as ESO does for SecretBinary.
    pub fn property(&self, property: &str) -> Result<SecretValue, PropertyError> {
        pick_property(self.expose_bytes(), property)
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Text(text) => SecretValue::from_text(text.expose_secret()),
            Repr::Json(text) => SecretValue::from_json(text.expose_secret().to_owned()),
            Repr::Binary(bytes) => SecretValue::from_bytes(bytes.expose_secret().to_vec()),
        }
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Repr::Text(_) => f.write_str("SecretValue::Text([REDACTED])"),
            Repr::Json(_) => f.write_str("SecretValue::Json([REDACTED])"),
            Repr::Binary(_) => f.write_str("SecretValue::Binary([REDACTED])"),
        }
    }
}

impl PartialEq for SecretValue {
    /// Compares in constant time for equal lengths, so a comparison leaks no more than a length.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose_bytes(), other.expose_bytes());
        self.is_binary() == other.is_binary()
            && a.len() == b.len()
            && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let text = SecretValue::from_text("MARKER-1");
        let binary = SecretValue::from_bytes(b"MARKER-2".to_vec());
        assert_eq!(format!("{text:?}"), "SecretValue::Text([REDACTED])");
        assert_eq!(format!("{binary:?}"), "SecretValue::Binary([REDACTED])");
        let json = SecretValue::from_json(r#"{"k":"MARKER-3"}"#.to_owned());
        assert_eq!(format!("{json:?}"), "SecretValue::Json([REDACTED])");
        assert_eq!(
            format!("{:?}", json.clone()),
            "SecretValue::Json([REDACTED])"
        );
    }

    #[test]
    fn binary_json_has_properties_and_utf8_binary_reads_as_text() {
        let binary = SecretValue::from_bytes(br#"{"k":"v"}"#.to_vec());
        assert_eq!(binary.property("k").unwrap().expose_str(), Some("v"));
        assert_eq!(binary.expose_str(), Some(r#"{"k":"v"}"#));
        assert_eq!(SecretValue::from_bytes(vec![0xff]).expose_str(), None);
    }

    #[test]
    fn equality_compares_kind_and_bytes() {
        assert_eq!(SecretValue::from_text("a"), SecretValue::from_text("a"));
        assert_ne!(SecretValue::from_text("a"), SecretValue::from_text("b"));
        assert_ne!(
            SecretValue::from_text("a"),
            SecretValue::from_bytes(b"a".to_vec())
        );
    }
}
