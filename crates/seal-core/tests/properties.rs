//! Property tests of the envelope: any bytes, any scope, any key size round-trip; any change to the
//! label, and any single-bit change to the ciphertext, makes opening fail.

use std::sync::OnceLock;

use proptest::prelude::*;
use seal_core::envelope;
use seal_core::{KeySize, OpenError, PrivateKey, Scope};

fn keys() -> &'static [PrivateKey; 3] {
    static KEYS: OnceLock<[PrivateKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [KeySize::Rsa2048, KeySize::Rsa3072, KeySize::Rsa4096]
            .map(|size| PrivateKey::generate(size).expect("key generation"))
    })
}

fn scope() -> impl Strategy<Value = Scope> {
    prop::sample::select(Scope::ALL.to_vec())
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_value_round_trips_in_any_scope_with_any_key_size(
        value in prop::collection::vec(any::<u8>(), 0..4096),
        scope in scope(),
        namespace in name(),
        secret in name(),
        key_index in 0usize..3,
    ) {
        let key = &keys()[key_index];
        let label = scope.label(Some(&namespace), Some(&secret)).unwrap();
        let sealed = envelope::seal(key.public_key(), &label, &value).unwrap();
        prop_assert_eq!(sealed.len(), 2 + key.public_key().bits() / 8 + value.len() + 16);
        let opened = envelope::open([key], &label, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), value.as_slice());
    }

    #[test]
    fn any_change_to_the_label_fails(
        value in prop::collection::vec(any::<u8>(), 0..64),
        namespace in name(),
        secret in name(),
        other_namespace in name(),
        other_secret in name(),
        scope in scope(),
        other_scope in scope(),
    ) {
        let key = &keys()[0];
        let label = scope.label(Some(&namespace), Some(&secret)).unwrap();
        let other = other_scope.label(Some(&other_namespace), Some(&other_secret)).unwrap();
        prop_assume!(label != other);
        let sealed = envelope::seal(key.public_key(), &label, &value).unwrap();
        prop_assert_eq!(envelope::open([key], &other, &sealed).unwrap_err(), OpenError::DecryptionFailed);
    }

    #[test]
    fn any_bit_flip_in_a_sealed_value_fails(
        value in prop::collection::vec(any::<u8>(), 1..64),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let key = &keys()[0];
        let label = Scope::ClusterWide.label(None, None).unwrap();
        let mut sealed = envelope::seal(key.public_key(), &label, &value).unwrap();
        let i = position.index(sealed.len());
        sealed[i] ^= 1 << bit;
        prop_assert!(envelope::open([key], &label, &sealed).is_err());
    }
}
