//! Splitting what a user writes into a KV mount and a path below it, so nobody has to think about
//! KV v2's `/data/` segment: `secret/ml/db` and `secret/data/ml/db` (vals' form, the HTTP API's
//! path) are the same secret, and so are `ml/db` and `data/ml/db` with a store mount `secret`
//! (ESO's `provider.vault.path`). On KV v1 `data` is an ordinary folder name and is kept.
//!
//! Without a store mount the first segment is the mount; mounts of several segments
//! (`team/kv`) need the store's mount set.
//!
//! References (`ref+vault://`) name no store: like vals, the provider then asks Vault which
//! mount a key is under and its KV version (`sys/internal/ui/mounts/<key>`), and [`locate`]
//! turns the answer into the path to read. vals v0.46 puts `/data/` after a KV v2 mount
//! itself, so `secret/ml/db` reads `secret/data/ml/db`; it would read `secret/data/data/ml/db`
//! for `secret/data/ml/db`, where seal reads `secret/data/ml/db` (its earlier form keeps working).

use super::KvVersion;

/// A mount as Vault describes it: its path (`secret/`, `team/kv/`) and KV version (KV v1 for
/// any engine but KV v2, read with a plain GET as vals does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mount {
    pub path: String,
    pub version: KvVersion,
}

impl Mount {
    /// The mount from `sys/internal/ui/mounts/<key>`'s `path` and `options.version`.
    pub fn from_ui(path: &str, options_version: Option<&str>) -> Self {
        Mount {
            path: path.trim_matches('/').to_owned(),
            version: if options_version == Some("2") {
                KvVersion::V2
            } else {
                KvVersion::V1
            },
        }
    }

    /// True when `key` is this mount or below it (segment by segment: `secret` does not
    /// cover `secretv2/x`).
    pub fn covers(&self, key: &str) -> bool {
        let key = key.trim_matches('/');
        key == self.path
            || key
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Where to read `key` given the mount Vault named for it; `None` when the server has no
/// mounts endpoint (an old Vault answers 404), where vals reads KV v1 at the key as given.
pub(crate) fn locate(
    key: &str,
    mount: Option<&Mount>,
) -> Result<(KvPath, KvVersion), &'static str> {
    match mount {
        Some(mount) => {
            split(Some(&mount.path), key, mount.version, false).map(|p| (p, mount.version))
        }
        None => split(None, key, KvVersion::V1, false).map(|p| (p, KvVersion::V1)),
    }
}

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
    fn a_detected_mount_decides_the_path_and_version() {
        let v2 = Mount::from_ui("secret/", Some("2"));
        let v1 = Mount::from_ui("kv/", Some("1"));
        let team = Mount::from_ui("team/kv/", Some("2"));
        // KV v2: /data/ is added, and an explicit one is not doubled (vals would double it).
        for key in ["secret/ml/db", "secret/data/ml/db"] {
            assert_eq!(
                locate(key, Some(&v2)),
                Ok((kv("secret", "ml/db"), KvVersion::V2)),
                "{key}"
            );
        }
        // KV v1 keeps a data folder; a mount of two segments needs no hint.
        assert_eq!(
            locate("kv/data/x", Some(&v1)),
            Ok((kv("kv", "data/x"), KvVersion::V1))
        );
        assert_eq!(
            locate("team/kv/app", Some(&team)),
            Ok((kv("team/kv", "app"), KvVersion::V2))
        );
        // No mounts endpoint: KV v1 at the first segment, as vals reads it.
        assert_eq!(
            locate("secret/data/x", None),
            Ok((kv("secret", "data/x"), KvVersion::V1))
        );
        assert!(locate("secret", Some(&v2)).is_err());
    }

    #[test]
    fn engines_other_than_kv_v2_read_as_v1() {
        assert_eq!(Mount::from_ui("sys/", None).version, KvVersion::V1);
        assert_eq!(Mount::from_ui("kv/", Some("1")).version, KvVersion::V1);
        assert_eq!(Mount::from_ui("x/", Some("")).version, KvVersion::V1);
    }

    #[test]
    fn a_mount_covers_its_own_paths_segment_by_segment() {
        let m = Mount::from_ui("secret/", Some("2"));
        assert!(m.covers("secret/ml/db"));
        assert!(m.covers("/secret/"));
        assert!(!m.covers("secretv2/x"));
        assert!(!m.covers("kv/secret/x"));
        assert!(Mount::from_ui("team/kv/", None).covers("team/kv/a"));
        assert!(!Mount::from_ui("team/kv/", None).covers("team/kvx/a"));
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
