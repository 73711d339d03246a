//! Fuzzes `seal_template`: what a SealedSecret's or an ExternalSecret's author writes, parsed and
//! rendered by the controller in its own memory. Inputs that are not UTF-8 are skipped (templates
//! are strings in the API). The target checks that nothing panics or overflows the stack, that a
//! template over the size limit is refused, that a render never produces more than the budget it
//! was given and spends exactly what it produced, and that no error quotes a value: the values are
//! markers that occur nowhere in the input.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use seal_core::SecretBytes;
use seal_template::{MAX_SOURCE, OutputBudget, Template, TemplateError};

const MARKER: &str = "zq9MARKERvalue";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let template = match Template::parse(text) {
        Ok(template) => template,
        Err(error) => {
            if text.len() > MAX_SOURCE {
                assert!(matches!(error, TemplateError::OverBudget { .. }));
            }
            return;
        }
    };
    assert!(text.len() <= MAX_SOURCE);
    let values: BTreeMap<String, SecretBytes> = [
        ("v", MARKER.to_owned()),
        ("w", MARKER.repeat(64)),
        ("b", "em05TUFSS0VSdmFsdWU=".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), SecretBytes::new(v.into_bytes())))
    .collect();
    // A small budget, so that growth is cut off quickly and the fuzzer stays fast.
    let limit = 64 * 1024;
    let mut budget = OutputBudget::new(limit);
    match template.render_within(&values, &mut budget) {
        Ok(out) => {
            assert!(out.expose().len() <= limit);
            assert_eq!(budget.remaining(), limit - out.expose().len());
        }
        Err(error) => {
            assert_eq!(budget.remaining(), limit, "a refused render spent its budget");
            assert!(!error.to_string().contains(MARKER), "an error quotes a value");
        }
    }
});
