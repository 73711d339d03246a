//! Criterion benchmarks of one item: sealing (one RSA public operation + AES-GCM) and opening (one
//! RSA private operation + AES-GCM) with RSA-2048 and RSA-4096 keys, parsed once as the controller
//! and the CLI keep them. Run with `cargo bench -p seal-core`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use seal_core::{PrivateKey, Scope, envelope};

const RSA2048: &str = include_str!("../../../testdata/vectors/keys/rsa2048-a.key.pem");
const RSA4096: &str = include_str!("../../../testdata/vectors/keys/rsa4096-a.key.pem");
const VALUE: &[u8] = b"postgres://ml_api:correct-horse-battery-staple@postgres.ml-prod.svc:5432/ml";

fn envelope_benches(c: &mut Criterion) {
    let label = Scope::Strict
        .label(Some("ml-prod"), Some("ml-api-db"))
        .expect("strict label");
    let mut group = c.benchmark_group("envelope");
    for (name, pem) in [("rsa2048", RSA2048), ("rsa4096", RSA4096)] {
        let key = PrivateKey::from_pem(pem.as_bytes()).expect("vector key parses");
        let sealed = envelope::seal(key.public_key(), &label, VALUE).expect("seal");
        // The first private operation on a fresh key pays for precomputation; do it before timing.
        envelope::open([&key], &label, &sealed).expect("open");
        group.bench_function(BenchmarkId::new("seal", name), |b| {
            b.iter(|| envelope::seal(key.public_key(), &label, VALUE).expect("seal"));
        });
        group.bench_function(BenchmarkId::new("open", name), |b| {
            b.iter(|| envelope::open([&key], &label, &sealed).expect("open"));
        });
    }
    group.finish();
}

criterion_group!(benches, envelope_benches);
criterion_main!(benches);
