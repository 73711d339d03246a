//! Fuzzes `seal_api::manifest::parse`, which reads every manifest stream the CLI is given (YAML
//! documents or JSON values, `List`s flattened, each object classified as a Secret, a seal or Bitnami
//! SealedSecret, or something else). Inputs that are not UTF-8 are skipped, as the CLI refuses them
//! before parsing. The target checks that nothing panics (the parser holds an `unreachable!` and
//! slices the text by byte offsets), that every reported line is 1-based and within the text (counting
//! every character YAML breaks lines at: LF, CR, NEL, LS, PS), and that an error keeps the module's promise to quote no content: a
//! message about an object's values (`invalid Secret: ...`, `invalid SealedSecret: ...`) or about JSON
//! syntax may not contain a run of 16 or more base64 characters (`A-Z a-z 0-9 + / =`, which covers
//! `data` values and typical tokens and passwords) that also occurs in the input. YAML syntax
//! messages are exempt because serde_yaml prefixes them with the path of map keys, which names
//! fields on purpose, and so is serde's closing ", expected ..." clause, which names types. Each
//! object's `describe` text is built as well.

#![no_main]

use libfuzzer_sys::fuzz_target;
use seal_api::manifest;
use seal_fuzz::echoed_run;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Upper bound for a line number. libyaml breaks lines at CR, NEL, LS and PS as well as LF (and
    // its lines are added to the document's start line, counted in LF), and an error may point one
    // past the last line.
    let breaks = text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    let last_line = breaks + 2;
    match manifest::parse(text) {
        Ok(objects) => {
            for located in &objects {
                assert!(
                    (1..=last_line).contains(&located.line),
                    "object at line {} of a text with {breaks} line breaks",
                    located.line
                );
                let _ = located.object.describe();
            }
        }
        Err(error) => {
            assert!(
                (1..=last_line).contains(&error.line),
                "error at line {} of a text with {breaks} line breaks: {error}",
                error.line
            );
            // serde_yaml starts its messages with the path of map keys that leads to the problem
            // (`data.password: invalid type ...`), which names fields on purpose, so only messages
            // without such a prefix are checked: the classification errors ("invalid Secret: ...",
            // serde_json's messages about the object's values) and JSON syntax errors.
            let keyed = error.message.starts_with("not valid YAML: ");
            // serde ends a message with ", expected <what the type wanted>": names from the types
            // (`struct SealedSecretSpec`), never from the input, though the fuzzer copies them into
            // its inputs. Only the part before it can quote a value.
            let about_input = error
                .message
                .split(", expected ")
                .next()
                .unwrap_or_default();
            if !keyed && let Some(run) = echoed_run(about_input, data) {
                panic!("error message quotes input {run:?}: {error}");
            }
        }
    }
});
