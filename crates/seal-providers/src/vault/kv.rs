//! Reading secrets from a KV mount: one secret (v1, v2, or a v2 version), several at once, and
//! a find (list the folders below a path, filter by name and KV v2 custom metadata, read the
//! matches). Each Vault call goes through [`Inner::call`], which supplies the token and retries.
//!
//! Listing is bounded (folders and depth), so a find over a huge tree fails with a clear
//! message instead of running for minutes; reads run a few at a time ([`CONCURRENCY`]).
//!
//! With [`super::VaultConfig::kv_from_mount`], a key's mount and KV version come from
//! `sys/internal/ui/mounts/<key>` ([`Inner::mount_of`]), asked once per mount and kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures_util::StreamExt as _;
use serde_json::Value;

use super::{Inner, KvVersion, path};
use crate::error::{Error, Location};
use crate::metrics::Call;
use crate::value::SecretValue;
use crate::{FindQuery, ProviderKind, SecretRef, distinct_keys, resolve_refs};
use rustify::enums::{RequestMethod, RequestType, ResponseType};

/// Folders a find may list before it gives up, and how deep it may go.
const FIND_MAX_FOLDERS: usize = 1000;
const FIND_MAX_DEPTH: usize = 16;
/// Reads in flight at once for `get_many` and `find`.
const CONCURRENCY: usize = 8;

impl Inner {
    /// The value of one KV secret: its data as a JSON object.
    pub(super) async fn read(
        self: &Arc<Self>,
        key: &str,
        version: Option<&str>,
    ) -> Result<SecretValue, Error> {
        let at = self.at(key);
        let located = if self.kv_from_mount {
            let mount = self.mount_of(&at, key).await?;
            path::locate(key, mount.as_ref())
        } else {
            path::split(self.mount.as_deref(), key, self.kv, false).map(|kv| (kv, self.kv))
        };
        let (kv, engine) = located.map_err(|detail| Error::InvalidRequest {
            at: at.clone(),
            detail: detail.into(),
        })?;
        let version = match (engine, version.map(str::trim)) {
            (_, None | Some("")) => None,
            (KvVersion::V2, Some(v)) => {
                Some(v.parse::<u64>().map_err(|_| Error::InvalidRequest {
                    at: at.clone(),
                    detail: "a KV v2 version is a positive number".into(),
                })?)
            }
            (KvVersion::V1, Some(_)) => {
                return Err(Error::InvalidRequest {
                    at,
                    detail: "KV v1 keeps no versions".into(),
                });
            }
        };
        self.read_kv(&at, &kv, engine, version).await
    }

    /// The mount `key` is under, as Vault names it; `None` when Vault names none (an old
    /// server without the endpoint answers 404), where the key is read as KV v1 as given. Asked
    /// once per mount: the lock is held across the question, so concurrent first reads under
    /// one mount wait for one answer, and later keys under it use the answer kept.
    async fn mount_of(
        self: &Arc<Self>,
        at: &Location,
        key: &str,
    ) -> Result<Option<path::Mount>, Error> {
        let mut mounts = self.mounts.lock().await;
        if let Some(mount) = mounts.iter().find(|m| m.covers(key)) {
            return Ok(Some(mount.clone()));
        }
        let answer = self
            .call(Call::VaultMount, at, |client| async move {
                vaultrs::api::exec_with_result(
                    &client.0,
                    UiMountRequest {
                        key: key.trim_matches('/').to_owned(),
                    },
                )
                .await
            })
            .await;
        let ui = match answer {
            Ok(ui) => ui,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mount = path::Mount::from_ui(
            ui["path"].as_str().unwrap_or_default(),
            ui["options"]["version"].as_str(),
        );
        if mount.path.is_empty() {
            return Ok(None);
        }
        mounts.push(mount.clone());
        Ok(Some(mount))
    }

    /// Every reference resolved, in order: each distinct (key, version) read once, a few at a
    /// time, then each reference's property picked.
    pub(super) async fn read_many(
        self: &Arc<Self>,
        refs: &[SecretRef],
    ) -> Vec<Result<SecretValue, Error>> {
        let fetched: HashMap<_, _> = futures_util::stream::iter(distinct_keys(refs))
            .map(|(key, version)| async move {
                let value = self.read(&key, version.as_deref()).await;
                ((key, version), value)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        resolve_refs(ProviderKind::Vault, &self.store, refs, &fetched)
    }

    /// [`Inner::read`] of a path already split.
    async fn read_kv(
        self: &Arc<Self>,
        at: &Location,
        kv: &path::KvPath,
        engine: KvVersion,
        version: Option<u64>,
    ) -> Result<SecretValue, Error> {
        let data: Value = self
            .call(Call::VaultRead, at, |client| async move {
                match (engine, version) {
                    (KvVersion::V1, _) => vaultrs::kv1::get(&client.0, &kv.mount, &kv.path).await,
                    (KvVersion::V2, None) => {
                        vaultrs::kv2::read(&client.0, &kv.mount, &kv.path).await
                    }
                    (KvVersion::V2, Some(n)) => {
                        vaultrs::kv2::read_version(&client.0, &kv.mount, &kv.path, n).await
                    }
                }
            })
            .await?;
        Ok(crate::property::secret_json(data))
    }

    /// Every secret path below `folder` (relative to the mount), listed breadth first.
    async fn list_tree(
        self: &Arc<Self>,
        at: &Location,
        mount: &str,
        folder: &str,
    ) -> Result<Vec<String>, Error> {
        let engine = self.kv;
        let mut queue = VecDeque::from([(folder.to_owned(), 0usize)]);
        let mut secrets = Vec::new();
        let mut listed = 0;
        while let Some((dir, depth)) = queue.pop_front() {
            listed += 1;
            if listed > FIND_MAX_FOLDERS {
                return Err(Error::InvalidRequest {
                    at: at.clone(),
                    detail: format!(
                        "more than {FIND_MAX_FOLDERS} folders to list; narrow the path"
                    ),
                });
            }
            let keys = self
                .call(Call::VaultList, at, |client| {
                    let dir = &dir;
                    async move {
                        match engine {
                            KvVersion::V1 => vaultrs::kv1::list(&client.0, mount, dir)
                                .await
                                .map(|r| r.data.keys),
                            KvVersion::V2 => vaultrs::kv2::list(&client.0, mount, dir).await,
                        }
                    }
                })
                .await;
            let keys = match keys {
                Ok(keys) => keys,
                // An empty folder (or a path that is a secret, not a folder) lists as 404.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            for key in keys {
                let full = if dir.is_empty() {
                    key.clone()
                } else {
                    format!("{dir}/{key}")
                };
                match full.strip_suffix('/') {
                    Some(sub) if depth < FIND_MAX_DEPTH => {
                        queue.push_back((sub.to_owned(), depth + 1));
                    }
                    Some(_) => {
                        return Err(Error::InvalidRequest {
                            at: at.clone(),
                            detail: format!(
                                "the tree is deeper than {FIND_MAX_DEPTH} folders; narrow the path"
                            ),
                        });
                    }
                    None => secrets.push(full),
                }
            }
        }
        Ok(secrets)
    }

    /// The secrets below `query.path` whose name matches and which carry the tags, with their
    /// current values, sorted by name.
    pub(super) async fn find(
        self: &Arc<Self>,
        query: &FindQuery,
    ) -> Result<Vec<(String, SecretValue)>, Error> {
        let folder = query.path.as_deref().unwrap_or("");
        let at = self.at(&format!("find under \"{folder}\""));
        let name_regexp = query
            .name_regexp
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| self.invalid(format!("find: invalid name regexp: {e}")))?;
        if !query.tags.is_empty() && self.kv == KvVersion::V1 {
            return Err(self.invalid("find: tags are KV v2 custom metadata; KV v1 has none"));
        }
        let kv = path::split(self.mount.as_deref(), folder, self.kv, true)
            .map_err(|detail| self.invalid(format!("find: {detail}")))?;
        let mut names: Vec<String> = self
            .list_tree(&at, &kv.mount, &kv.path)
            .await?
            .into_iter()
            .filter(|name| name_regexp.as_ref().is_none_or(|re| re.is_match(name)))
            .collect();
        if !query.tags.is_empty() {
            let tagged: Vec<Option<String>> = futures_util::stream::iter(names)
                .map(|name| {
                    let (at, kv) = (&at, &kv);
                    async move {
                        let metadata = self
                            .call(Call::VaultReadMetadata, at, |client| {
                                let name = &name;
                                async move {
                                    vaultrs::kv2::read_metadata(&client.0, &kv.mount, name).await
                                }
                            })
                            .await?;
                        let custom = metadata.custom_metadata.unwrap_or_default();
                        let wanted = query.tags.iter().all(|(k, v)| custom.get(k) == Some(v));
                        Ok::<_, Error>(wanted.then_some(name))
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            names = tagged.into_iter().flatten().collect();
        }
        if names.len() > query.limit {
            return Err(Error::TooMany {
                at,
                limit: query.limit,
            });
        }
        let mut found: Vec<(String, SecretValue)> = Vec::with_capacity(names.len());
        let reads: Vec<_> = futures_util::stream::iter(names)
            .map(|name| {
                let secret = path::KvPath {
                    mount: kv.mount.clone(),
                    path: name,
                };
                let at = self.at(&format!("{}/{}", secret.mount, secret.path));
                async move {
                    let value = self.read_kv(&at, &secret, self.kv, None).await;
                    (secret.path, value)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (name, value) in reads {
            match value {
                Ok(value) => found.push((name, value)),
                // Deleted between the listing and the read: it is not there any more.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

/// `GET /v1/sys/internal/ui/mounts/<key>`: the mount a path is under (what `vault kv` and vals
/// ask before reading). Any token with a capability below the mount may call it.
struct UiMountRequest {
    key: String,
}

impl rustify::Endpoint for UiMountRequest {
    type Response = Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("sys/internal/ui/mounts/{}", self.key)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}
