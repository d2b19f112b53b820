//! Canonical JSON, signing and verification at PEP 458 scale: a snapshot listing 16,384 bin roles
//! and a bin role holding 1,000 project pages. Results are recorded in the crate docs (lib.rs).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use tufa_metadata::*;

fn expires() -> Expires {
    Expires::after(SystemTime::now(), Duration::from_secs(86400))
}

fn snapshot_with_bins() -> Snapshot {
    let bins = SuccinctRoles::new(vec![], Threshold::new(1).unwrap(), 14, "bin").unwrap();
    let meta: BTreeMap<String, MetaFile> = bins
        .role_names()
        .map(|name| (format!("{name}.json"), MetaFile::new(1234)))
        .chain([("targets.json".to_string(), MetaFile::new(1))])
        .collect();
    assert_eq!(meta.len(), 16_385);
    Snapshot::new(42, expires(), meta)
}

fn bin_with_pages() -> Targets {
    let mut targets = Targets::new(7, expires());
    for n in 0..1000 {
        let page = format!("{{\"name\":\"project-{n}\"}}");
        targets.targets.insert(
            TargetPath::new(format!("simple/project-{n}/index.json")).unwrap(),
            TargetFile::from_content(page.as_bytes()),
        );
    }
    targets
}

fn bench_role<T: Role>(c: &mut Criterion, label: &str, role: T) {
    let signer = {
        let der = generate_private_key(KeyAlgorithm::Ed25519).unwrap();
        FileSigner::from_pkcs8_der(der.as_bytes()).unwrap()
    };
    let mut group = c.benchmark_group(label);
    group.bench_function("serde_json::to_vec (baseline)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&role)).unwrap())
    });
    group.bench_function("canonical JSON", |b| {
        b.iter(|| to_canonical_bytes(black_box(&role)).unwrap())
    });
    let mut metadata = Metadata::new(role);
    group.bench_function("sign (canonicalize + Ed25519)", |b| {
        b.iter(|| metadata.sign(&signer).map(|_| ()).unwrap())
    });

    let bytes = metadata.to_bytes().unwrap();
    group.bench_function("parse (from_bytes, all checks)", |b| {
        b.iter(|| Metadata::<T>::from_bytes(black_box(&bytes)).unwrap())
    });
    let keys = BTreeMap::from([(signer.key_id().clone(), signer.public_key().clone())]);
    let keyids = [signer.key_id().clone()];
    group.bench_function("verify (canonicalize + Ed25519)", |b| {
        b.iter(|| {
            verify_threshold(
                label,
                &keys,
                &keyids,
                Threshold::new(1).unwrap(),
                &metadata.signed_bytes().unwrap(),
                metadata.signatures(),
            )
            .unwrap()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_role(c, "snapshot, 16384 bins", snapshot_with_bins());
    bench_role(c, "bin role, 1000 targets", bin_with_pages());
}

criterion_group! {
    name = metadata;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(metadata);
