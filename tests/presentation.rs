//! What a reader sees before any number: every backend kind drawn in its own colour.

use cvm::report::charts::backend_color;
use cvm::scenario::BackendKind;

#[test]
fn every_backend_kind_has_its_own_colour() {
    let colours: Vec<_> = BackendKind::ALL
        .iter()
        .map(|k| (k.as_str(), backend_color(k.as_str())))
        .collect();
    for (i, (a, ca)) in colours.iter().enumerate() {
        for (b, cb) in &colours[i + 1..] {
            assert_ne!(ca, cb, "{a} and {b} share a colour");
        }
    }
}
