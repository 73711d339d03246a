//! Properties of the reference finder (`seal_providers::reference`): it never panics on any
//! text, every error points inside the text, and a reference built from arbitrary parts parses
//! back to those parts, prints in a form that parses to the same reference, and is found with
//! the right span inside a longer string ended by `+`.

use std::fmt::Write as _;

use proptest::prelude::*;
use seal_providers::reference::{Backend, Param, find, parse};

/// Percent-encodes what would end or split a part (and a leading `/` of a path).
fn encode(text: &str, extra: &[char], path: bool) -> String {
    let mut out = String::new();
    for (i, c) in text.char_indices() {
        let reserved = ['%', '+', ' ', '\t', '\n', '\r'].contains(&c)
            || extra.contains(&c)
            || (path && i == 0 && c == '/');
        if reserved {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parts() -> impl Strategy<Value = (bool, bool, String, Vec<(usize, String)>, Option<String>)> {
    (
        any::<bool>(),
        any::<bool>(),
        "\\PC{1,20}",
        proptest::collection::vec((0usize..5, "\\PC{1,12}"), 0..4),
        proptest::option::of("(/\\PC{0,8}){1,3}"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn finder_never_panics_and_errors_point_inside(text in "\\PC{0,60}(ref\\+|secretref\\+)?\\PC{0,40}") {
        match find(&text) {
            Ok(found) => for f in found {
                prop_assert!(f.span.end <= text.len() && f.span.start < f.span.end);
            },
            Err(e) => prop_assert!(e.offset <= text.len()),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in "[ -~\\n\\t%+#?&=/ü]{0,80}") {
        let text = format!("x ref+vault://{text} ref+awssecrets://{text}");
        let _ = find(&text);
    }

    #[test]
    fn references_round_trip((vault, secretref, path, params, fragment) in parts(),
                             prefix in "[a-z :@/]{0,10}", suffix in "\\PC{0,10}") {
        let backend = if vault { Backend::Vault } else { Backend::AwsSecrets };
        // Free-text parameters only (auth_method and version have their own grammar, and a
        // secret id is redacted when printed).
        let names: &[Param] = if vault {
            &[Param::Address, Param::Namespace, Param::Role, Param::RoleId, Param::TokenFile]
        } else {
            &[Param::Region, Param::RoleArn, Param::VersionStage, Param::Profile]
        };
        let mut chosen: Vec<(Param, String)> = Vec::new();
        for (i, value) in params {
            let param = names[i % names.len()];
            if !chosen.iter().any(|(p, _)| *p == param) {
                chosen.push((param, value));
            }
        }
        let mut text = format!(
            "{}ref+{}://{}",
            if secretref { "secret" } else { "" },
            backend.scheme(),
            encode(&path, &['?', '#'], true)
        );
        for (i, (param, value)) in chosen.iter().enumerate() {
            text.push(if i == 0 { '?' } else { '&' });
            text.push_str(param.name());
            text.push('=');
            text.push_str(&encode(value, &['#', '&', '='], false));
        }
        if let Some(fragment) = &fragment {
            text.push('#');
            text.push_str(&encode(fragment, &[], false));
        }

        let reference = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(reference.backend(), backend);
        prop_assert_eq!(reference.is_secretref(), secretref);
        prop_assert_eq!(reference.path(), path.as_str());
        for (param, value) in &chosen {
            prop_assert_eq!(reference.param(*param), Some(value.as_str()));
        }
        prop_assert_eq!(reference.property(), fragment.map(|f| format!("#{f}")));
        prop_assert_eq!(parse(&reference.to_string()).unwrap(), reference.clone());

        // Inside a longer string, ended by `+`.
        prop_assume!(!prefix.ends_with("secret") && !prefix.contains("ref+"));
        prop_assume!(!suffix.contains("ref+"));
        let embedded = format!("{prefix}{text}+{suffix}");
        let found = find(&embedded).map_err(|e| TestCaseError::fail(format!("{embedded}: {e}")))?;
        prop_assert_eq!(found.len(), 1);
        prop_assert_eq!(found[0].span.clone(), prefix.len()..prefix.len() + text.len() + 1);
        prop_assert_eq!(&found[0].reference, &reference);
    }
}
