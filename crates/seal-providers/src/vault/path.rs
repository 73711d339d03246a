//! Splitting what a user writes into a KV mount and a path below it, so nobody has to think about
//! KV v2's `/data/` segment: `secret/ml/db` and `secret/data/ml/db` (vals' form, the HTTP API's
//! path) are the same secret, and so are `ml/db` and `data/ml/db` with a store mount `secret`
//! (ESO's `provider.vault.path`). On KV v1 `data` is an ordinary folder name and is kept.
//!
//! Without a store mount the first segment is the mount; mounts of several segments
//! (`team/kv`) need the store's mount set.

use super::KvVersion;

/// A KV location: the mount and the path below it, neither with leading or trailing slashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KvPath {
    pub mount: String,
    pub path: String,
}

/// Splits `key` (a secret, or a folder when `folder` is true, where an empty path means the
/// mount's root). Errors say what is malformed.
pub(crate) fn split(
    mount: Option<&str>,
    key: &str,
    version: KvVersion,
    folder: bool,
) -> Result<KvPath, &'static str> {
    let key = key.trim_matches('/');
    let (mount, rest) = match mount.map(|m| m.trim_matches('/')) {
        Some("") => return Err("the store's mount is empty"),
        Some(mount) => {
            let rest = if key == mount {
                ""
            } else {
                key.strip_prefix(mount)
                    .and_then(|r| r.strip_prefix('/'))
                    .unwrap_or(key)
            };
            (mount, rest)
        }
        None => match key.split_once('/') {
            Some((mount, rest)) => (mount, rest),
            None if folder && !key.is_empty() => (key, ""),
            None => return Err("expected <mount>/<path>, e.g. secret/ml/db"),
        },
    };
    let rest = match version {
        KvVersion::V2 if rest == "data" => "",
        KvVersion::V2 => rest.strip_prefix("data/").unwrap_or(rest),
        KvVersion::V1 => rest,
    };
    if rest.split('/').any(|s| s == "." || s == "..") {
        return Err("the path may not contain . or .. segments");
    }
    if rest.contains("//") {
        return Err("the path has an empty segment");
    }
    if rest.is_empty() && !folder {
        return Err("no secret path after the mount");
    }
    Ok(KvPath {
        mount: mount.to_owned(),
        path: rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(mount: &str, path: &str) -> KvPath {
        KvPath {
            mount: mount.into(),
            path: path.into(),
        }
    }

    #[test]
    fn v2_paths_with_and_without_data_are_the_same_secret() {
        for key in ["secret/ml/db", "secret/data/ml/db", "/secret/data/ml/db/"] {
            assert_eq!(
                split(None, key, KvVersion::V2, false),
                Ok(kv("secret", "ml/db"))
            );
        }
        for key in ["ml/db", "data/ml/db", "secret/ml/db", "secret/data/ml/db"] {
            assert_eq!(
                split(Some("secret"), key, KvVersion::V2, false),
                Ok(kv("secret", "ml/db")),
                "{key}"
            );
        }
    }

    #[test]
    fn v1_keeps_a_data_folder() {
        assert_eq!(
            split(None, "kv/data/x", KvVersion::V1, false),
            Ok(kv("kv", "data/x"))
        );
        assert_eq!(
            split(Some("kv"), "data/x", KvVersion::V1, false),
            Ok(kv("kv", "data/x"))
        );
    }

    #[test]
    fn a_store_mount_may_have_several_segments() {
        assert_eq!(
            split(Some("team/kv/"), "team/kv/data/app", KvVersion::V2, false),
            Ok(kv("team/kv", "app"))
        );
        assert_eq!(
            split(Some("team/kv"), "app", KvVersion::V2, false),
            Ok(kv("team/kv", "app"))
        );
    }

    #[test]
    fn folders_may_be_the_mount_root() {
        assert_eq!(
            split(None, "secret", KvVersion::V2, true),
            Ok(kv("secret", ""))
        );
        assert_eq!(
            split(None, "secret/data/", KvVersion::V2, true),
            Ok(kv("secret", ""))
        );
        assert_eq!(
            split(Some("secret"), "", KvVersion::V2, true),
            Ok(kv("secret", ""))
        );
        assert_eq!(
            split(Some("secret"), "ml/", KvVersion::V2, true),
            Ok(kv("secret", "ml"))
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(split(None, "secret", KvVersion::V2, false).is_err());
        assert!(split(None, "", KvVersion::V2, true).is_err());
        assert!(split(None, "secret/data", KvVersion::V2, false).is_err());
        assert!(split(Some("secret"), "", KvVersion::V2, false).is_err());
        assert!(split(Some(""), "x", KvVersion::V2, false).is_err());
        assert!(split(None, "secret/ml/../admin", KvVersion::V2, false).is_err());
        assert!(split(None, "secret/ml//db", KvVersion::V2, false).is_err());
    }
}
