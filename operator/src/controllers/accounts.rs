//! The MySQL accounts the operator manages, read from the group's credentials Secret:
//! its own administrative account (root, created by the image) and the replication
//! account it creates on the primary, from where it replicates to the replica and is
//! carried by every CLONE. Replicas and clone recipients log in to the primary as that
//! account, never as root. Which site gets the account is a pure decision here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;

use crate::children::dragonfly::DRAGONFLY_PASSWORD_KEY;
use crate::children::{
    DEFAULT_REPLICATION_USER, MAX_REPLICATION_PASSWORD_CHARS, REPLICATION_PASSWORD_KEY,
    REPLICATION_USER_KEY, ROOT_PASSWORD_KEY, replication_password_too_long,
};
use crate::engine::MysqlProbe;
use crate::seams::ReplicationAccount;

/// What the operator reads from the Secret. `Debug` never prints a password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub root_password: String,
    pub replication: ReplicationAccount,
    /// `dragonfly-password`: Dragonfly's `requirepass` (needed only with `spec.dragonfly`).
    pub dragonfly_password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

/// Why the Secret's credentials cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("has no key {key}")]
    MissingKey { key: &'static str },
    /// Refused here, before any replica is configured with it: MySQL would accept the
    /// account and then refuse every `CHANGE REPLICATION SOURCE` (3056).
    #[error(
        "key {key}: the replication password has {length} characters; MySQL accepts at most \
         {MAX_REPLICATION_PASSWORD_CHARS} for a replication channel (error 3056): use a shorter one"
    )]
    ReplicationPasswordTooLong { key: &'static str, length: usize },
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    from_data.or_else(|| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key).cloned())
    })
}

impl Credentials {
    /// Reads `root-password`, `replication-password` and the optional
    /// `replication-user` (default `repl`; an empty value counts as absent).
    pub(crate) fn from_secret(secret: &Secret) -> Result<Self, CredentialsError> {
        let required =
            |key: &'static str| value(secret, key).ok_or(CredentialsError::MissingKey { key });
        let password = required(REPLICATION_PASSWORD_KEY)?;
        if let Some(length) = replication_password_too_long(&password) {
            return Err(CredentialsError::ReplicationPasswordTooLong {
                key: REPLICATION_PASSWORD_KEY,
                length,
            });
        }
        Ok(Self {
            root_password: required(ROOT_PASSWORD_KEY)?,
            replication: ReplicationAccount {
                user: value(secret, REPLICATION_USER_KEY)
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| DEFAULT_REPLICATION_USER.to_string()),
                password,
            },
            dragonfly_password: value(secret, DRAGONFLY_PASSWORD_KEY).filter(|p| !p.is_empty()),
        })
    }
}

/// The site on which to create or update the replication account now, with its server
/// UUID, or `None`. Only the active site, only while it is writable and the only
/// writable site: a write anywhere else would be an errant transaction (on a replica)
/// or deepen a split brain. `done` is the server UUID the account was last ensured on
/// by this operator process (a new primary, or a cloned one, gets it again: cheap and
/// idempotent).
pub(crate) fn account_site(
    active: Option<&str>,
    probes: &BTreeMap<String, MysqlProbe>,
    done: Option<&str>,
) -> Option<(String, String)> {
    let active = active?;
    let writable: Vec<(&String, &str)> = probes
        .iter()
        .filter_map(|(site, probe)| match probe {
            MysqlProbe::Answered(seen) if seen.writable() => {
                Some((site, seen.server_uuid.as_str()))
            }
            _ => None,
        })
        .collect();
    match writable.as_slice() {
        [(site, uuid)] if site.as_str() == active && done != Some(*uuid) => {
            Some((site.to_string(), uuid.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MysqlObservation;
    use crate::engine::time::Millis;
    use k8s_openapi::ByteString;

    fn answered(uuid: &str, read_only: bool, super_read_only: bool) -> MysqlProbe {
        MysqlProbe::Answered(MysqlObservation {
            read_only,
            super_read_only,
            gtid_executed: Default::default(),
            server_uuid: uuid.to_string(),
            replication: None,
            semisync_source_active: false,
            clone_status: None,
            probed_at: Millis(0),
        })
    }

    fn probes(list: &[(&str, MysqlProbe)]) -> BTreeMap<String, MysqlProbe> {
        list.iter()
            .map(|(s, p)| (s.to_string(), p.clone()))
            .collect()
    }

    #[test]
    fn the_account_goes_to_the_writable_active_site_only() {
        let primary = || answered("u-iad", false, false);
        let fenced = || answered("u-pdx", true, true);
        let both = probes(&[("iad", primary()), ("pdx", fenced())]);
        assert_eq!(
            account_site(Some("iad"), &both, None),
            Some(("iad".into(), "u-iad".into()))
        );
        // Done already on this server: nothing to write.
        assert_eq!(account_site(Some("iad"), &both, Some("u-iad")), None);
        // A new server behind the same site (recloned, replaced): again.
        assert!(account_site(Some("iad"), &both, Some("u-old")).is_some());
        // No active site yet, or the active site still fenced (bootstrap before the
        // sidecar lifted the fence), or read_only only: never.
        assert_eq!(account_site(None, &both, None), None);
        let starting = probes(&[("iad", answered("u-iad", true, true)), ("pdx", fenced())]);
        assert_eq!(account_site(Some("iad"), &starting, None), None);
        let read_only = probes(&[("iad", answered("u-iad", true, false)), ("pdx", fenced())]);
        assert_eq!(account_site(Some("iad"), &read_only, None), None);
        // Unsafe: the writable site is not the active one (an errant transaction there).
        assert_eq!(account_site(Some("pdx"), &both, None), None);
        // Unsafe: two writable sites (split brain): write nowhere.
        let split = probes(&[("iad", primary()), ("pdx", answered("u-pdx", false, false))]);
        assert_eq!(account_site(Some("iad"), &split, None), None);
        // The active site not answering.
        let silent = probes(&[("iad", MysqlProbe::Failing { since: Millis(0) })]);
        assert_eq!(account_site(Some("iad"), &silent, None), None);
    }

    #[test]
    fn credentials_come_from_the_secret_with_a_default_user() {
        let secret = |pairs: &[(&str, &str)]| Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        let full = secret(&[
            ("root-password", "r"),
            ("replication-password", "p"),
            ("replication-user", "replicator"),
        ]);
        let credentials = Credentials::from_secret(&full).unwrap();
        assert_eq!(credentials.root_password, "r");
        assert_eq!(credentials.replication.user, "replicator");
        assert_eq!(credentials.replication.password, "p");
        assert!(!format!("{credentials:?}").contains("\"p\""));
        assert!(!format!("{credentials:?}").contains("\"r\""));
        let minimal = secret(&[("root-password", "r"), ("replication-password", "p")]);
        assert_eq!(
            Credentials::from_secret(&minimal).unwrap().replication.user,
            "repl"
        );
        let missing = secret(&[("root-password", "r")]);
        assert_eq!(
            Credentials::from_secret(&missing),
            Err(CredentialsError::MissingKey {
                key: "replication-password"
            })
        );
        // 32 characters (multi-byte ones count once) is MySQL's limit for a channel.
        let at_limit = "é".repeat(32);
        let ok = secret(&[("root-password", "r"), ("replication-password", &at_limit)]);
        assert_eq!(
            Credentials::from_secret(&ok).unwrap().replication.password,
            at_limit
        );
        let too_long = "p".repeat(33);
        let refused = secret(&[("root-password", "r"), ("replication-password", &too_long)]);
        let error = Credentials::from_secret(&refused).unwrap_err();
        assert_eq!(
            error,
            CredentialsError::ReplicationPasswordTooLong {
                key: "replication-password",
                length: 33
            }
        );
        let message = error.to_string();
        assert!(
            message.contains("33 characters") && message.contains("at most 32"),
            "{message}"
        );
        assert!(
            !message.contains(&too_long),
            "never prints the password: {message}"
        );
    }
}
