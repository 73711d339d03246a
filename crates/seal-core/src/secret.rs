//! `SecretBytes`: the one type plaintext secret values travel in.
//!
//! It zeroizes its buffer when dropped, prints `SecretBytes([REDACTED; n bytes])` through `Debug`, has
//! no `Display`, and hands out its contents only through [`SecretBytes::expose`], so every place that
//! reads a value is greppable.

use std::fmt;

use zeroize::Zeroizing;

/// A plaintext secret value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes` without copying them.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads the value. Every call site is a place plaintext is handled.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret: the ciphertext reveals it anyway).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "SecretBytes([REDACTED; 7 bytes])");
        assert_eq!(secret.expose(), b"hunter2");
    }
}
