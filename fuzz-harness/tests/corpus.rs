//! Every input of the fuzz corpus (`fuzz/corpus/<target>/`, minimised by `cargo fuzz cmin`) and
//! every input a finding was fixed for (`fuzz/regressions/<target>/`, named after the bug),
//! through its target's checks: what fuzzing found stays fixed.

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, check) in framescale_fuzz::TARGETS {
        let dir = corpus.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{name}: {} fails its checks",
                path.display()
            );
            inputs += 1;
        }
        assert!(inputs > 0, "{name}: the corpus is empty");
    }
}
