//! Authentication and role-based access, as etcd v3 has them: users with passwords,
//! roles holding read/write permissions on keys and key ranges, the `root` user and
//! role, auth enable/disable, and tokens.
//!
//! The whole auth state is part of the replicated state: every change goes through the
//! log as an [`AuthCommand`] and is applied (admin check included) by every member
//! alike, and writes carry their caller so their permissions are checked when they are
//! applied, against the auth state of that log position, never a stale one.
//!
//! Passwords are hashed with Argon2id on the member that receives them; only the hash
//! enters the log. Tokens are stateless: the user, an expiry, and a fingerprint of the
//! user's password hash, sealed with keyed BLAKE3 under a secret that every `auth
//! enable` replaces. So a token works on every member and across restarts, and stops
//! working when it expires, when its user's password changes or the user is deleted,
//! and when auth is disabled.

use base64::Engine as _;
use orbit_kv::{AuthError, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::mvcc::{Mvcc, WriteCommand};

/// The user every `auth enable` needs, and the role that allows everything.
pub const ROOT: &str = "root";
/// Token lifetime unless configured (etcd's `--auth-token-ttl` default).
pub const DEFAULT_TOKEN_TTL_S: u64 = 300;
/// What every token starts with, and its layout's version.
const TOKEN_PREFIX: &str = "orbit1.";

/// What a permission allows, numbered as etcd's `authpb.Permission.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermKind {
    /// Range and watch.
    Read,
    /// Put and delete.
    Write,
    /// Both.
    ReadWrite,
}

impl PermKind {
    /// From etcd's number.
    pub fn from_pb(n: i32) -> Option<PermKind> {
        match n {
            0 => Some(PermKind::Read),
            1 => Some(PermKind::Write),
            2 => Some(PermKind::ReadWrite),
            _ => None,
        }
    }

    /// etcd's number.
    pub fn to_pb(self) -> i32 {
        match self {
            PermKind::Read => 0,
            PermKind::Write => 1,
            PermKind::ReadWrite => 2,
        }
    }

    fn allows(self, need: Need) -> bool {
        matches!(
            (self, need),
            (PermKind::ReadWrite, _)
                | (PermKind::Read, Need::Read)
                | (PermKind::Write, Need::Write)
        )
    }
}

/// A permission on one key (`range_end` empty), a range `[key, range_end)`, or every
/// key from `key` on (`range_end` = `"\0"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// What it allows.
    pub kind: PermKind,
    /// First key.
    pub key: Vec<u8>,
    /// End of the range, as etcd writes it.
    pub range_end: Vec<u8>,
}

impl Permission {
    /// The keys it covers as a half-open interval.
    fn interval(&self) -> Interval {
        Interval::of(&self.key, &self.range_end)
    }
}

/// A user.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The Argon2id hash (PHC string); `None` for a user that can only be one through
    /// its client certificate (etcd's `--no-password`).
    pub password: Option<String>,
    /// Its roles, sorted.
    pub roles: BTreeSet<String>,
}

/// A role: the permissions it grants, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its permissions.
    pub perms: Vec<Permission>,
}

/// The replicated auth state.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    /// Whether requests are checked.
    pub enabled: bool,
    /// Counts every change (etcd's auth revision).
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
    /// The key tokens are sealed with; a new one at every enable.
    pub secret: [u8; 32],
}

/// A change to the auth state, as the log carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthCommand {
    /// Turn checks on, with a fresh token secret.
    Enable {
        /// The new secret.
        secret: [u8; 32],
    },
    /// Turn checks off (every token dies).
    Disable,
    /// Add a user with a password hash, or none.
    UserAdd {
        /// Name.
        name: String,
        /// Argon2id hash; `None`: no password.
        password: Option<String>,
    },
    /// Delete a user.
    UserDelete {
        /// Name.
        name: String,
    },
    /// Change a user's password (a no-password user keeps none).
    UserChangePassword {
        /// Name.
        name: String,
        /// The new hash.
        password: String,
    },
    /// Give a user a role.
    UserGrantRole {
        /// User.
        user: String,
        /// Role.
        role: String,
    },
    /// Take a role from a user.
    UserRevokeRole {
        /// User.
        name: String,
        /// Role.
        role: String,
    },
    /// Add a role.
    RoleAdd {
        /// Name.
        name: String,
    },
    /// Delete a role (and take it from every user).
    RoleDelete {
        /// Name.
        name: String,
    },
    /// Grant a permission to a role (replacing one on the same range).
    RoleGrantPermission {
        /// Role.
        name: String,
        /// The permission.
        perm: Permission,
    },
    /// Revoke the permission on exactly this range.
    RoleRevokePermission {
        /// Role.
        name: String,
        /// Its key.
        key: Vec<u8>,
        /// Its range end.
        range_end: Vec<u8>,
    },
}

// Hashes and the token secret stay out of every log line and debug print.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("password", &self.password.as_ref().map(|_| "<hash>"))
            .field("roles", &self.roles)
            .finish()
    }
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("enabled", &self.enabled)
            .field("revision", &self.revision)
            .field("users", &self.users)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AuthCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthCommand::Enable { .. } => write!(f, "Enable"),
            AuthCommand::Disable => write!(f, "Disable"),
            AuthCommand::UserAdd { name, password } => {
                write!(f, "UserAdd({name:?}, password: {})", password.is_some())
            }
            AuthCommand::UserDelete { name } => write!(f, "UserDelete({name:?})"),
            AuthCommand::UserChangePassword { name, .. } => {
                write!(f, "UserChangePassword({name:?})")
            }
            AuthCommand::UserGrantRole { user, role } => {
                write!(f, "UserGrantRole({user:?}, {role:?})")
            }
            AuthCommand::UserRevokeRole { name, role } => {
                write!(f, "UserRevokeRole({name:?}, {role:?})")
            }
            AuthCommand::RoleAdd { name } => write!(f, "RoleAdd({name:?})"),
            AuthCommand::RoleDelete { name } => write!(f, "RoleDelete({name:?})"),
            AuthCommand::RoleGrantPermission { name, perm } => {
                write!(f, "RoleGrantPermission({name:?}, {perm:?})")
            }
            AuthCommand::RoleRevokePermission {
                name,
                key,
                range_end,
            } => write!(f, "RoleRevokePermission({name:?}, {key:?}, {range_end:?})"),
        }
    }
}

/// Which permission a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// To read.
    Read,
    /// To write.
    Write,
}

/// Keys `[start, end)`; `end` `None` is unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    /// etcd's reading of a key and range end: one key, a range, or `"\0"` for every
    /// key from `key` on. An empty or backwards range is the one key.
    fn of(key: &[u8], range_end: &[u8]) -> Interval {
        let one = || {
            let mut end = key.to_vec();
            end.push(0);
            Some(end)
        };
        let end = if range_end == [0] {
            None
        } else if range_end.is_empty() || range_end <= key {
            one()
        } else {
            Some(range_end.to_vec())
        };
        Interval {
            start: key.to_vec(),
            end,
        }
    }
}

/// Whether the union of `have` covers all of `want`.
fn covers(mut have: Vec<Interval>, want: &Interval) -> bool {
    have.sort_by(|a, b| a.start.cmp(&b.start));
    // `reached`: every key from want.start up to it (exclusive) is covered.
    let mut reached: Option<Vec<u8>> = Some(want.start.clone());
    for i in have {
        let Some(at) = &reached else { return true };
        if i.start > *at {
            break;
        }
        reached = match (&i.end, at) {
            (None, _) => None,
            (Some(e), at) if e > at => Some(e.clone()),
            _ => reached,
        };
        if let (Some(r), Some(w)) = (&reached, &want.end) {
            if r >= w {
                return true;
            }
        }
    }
    match (&reached, &want.end) {
        (None, _) => true,
        (Some(r), Some(w)) => r >= w,
        (Some(_), None) => false,
    }
}

/// A permission range etcd accepts: a key, and no end, an end after it, or `"\0"`.
fn valid_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

impl AuthState {
    fn user(&self, name: &str) -> Result<&User, AuthError> {
        self.users.get(name).ok_or(AuthError::UserNotFound)
    }

    /// Whether `user` has the `root` role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Allows administration (user and role changes, compaction, membership,
    /// snapshots) to `caller`: anyone while auth is disabled, else `root` users.
    pub fn check_admin(&self, caller: Option<&str>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let name = caller.ok_or(AuthError::UserEmpty)?;
        if self.user(name)?.roles.contains(ROOT) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Allows `need` on one key (`range_end` empty) or a range to `caller`.
    pub fn check(
        &self,
        caller: Option<&str>,
        need: Need,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let name = caller.ok_or(AuthError::UserEmpty)?;
        // etcd: a user that does not exist (a certificate's unknown name) is denied.
        let user = self.users.get(name).ok_or(AuthError::PermissionDenied)?;
        if user.roles.contains(ROOT) {
            return Ok(());
        }
        let have = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
            .filter(|p| p.kind.allows(need))
            .map(Permission::interval)
            .collect();
        if covers(have, &Interval::of(key, range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Allows `caller` to touch lease `id`'s keys (revoke it, renew it, attach a key to
    /// it): `need` on every key it holds. Admins may always.
    pub fn check_lease(
        &self,
        caller: Option<&str>,
        kv: &Mvcc,
        id: i64,
        need: Need,
    ) -> Result<(), AuthError> {
        if !self.enabled || self.check_admin(caller).is_ok() {
            return Ok(());
        }
        for key in kv.lease_keys(id).unwrap_or_default() {
            self.check(caller, need, &key, &[])?;
        }
        Ok(())
    }

    /// Allows `caller` a write as it is applied: etcd's rules for each kind.
    pub fn check_write(
        &self,
        caller: Option<&str>,
        kv: &Mvcc,
        cmd: &WriteCommand,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        match cmd {
            WriteCommand::Put(p) => self.check_put(caller, kv, p),
            WriteCommand::Delete(d) => self.check_delete(caller, &d.key, &d.range_end, d.prev_kv),
            WriteCommand::Txn(t) => self.check_txn(caller, kv, t),
            WriteCommand::Compact(_) => self.check_admin(caller),
            // etcd lets any caller grant a lease: it holds nothing until a key is put.
            WriteCommand::LeaseGrant { .. } => Ok(()),
            WriteCommand::LeaseRevoke { id } => self.check_lease(caller, kv, *id, Need::Write),
        }
    }

    fn check_put(
        &self,
        caller: Option<&str>,
        kv: &Mvcc,
        p: &orbit_kv::PutRequest,
    ) -> Result<(), AuthError> {
        self.check(caller, Need::Write, &p.key, &[])?;
        // A key put on a lease whose keys the caller may not write would let it
        // revoke those keys' lease by proxy: etcd refuses it.
        if p.lease != 0 {
            self.check_lease(caller, kv, p.lease, Need::Write)?;
        }
        if p.prev_kv {
            self.check(caller, Need::Read, &p.key, &[])?;
        }
        Ok(())
    }

    fn check_delete(
        &self,
        caller: Option<&str>,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
    ) -> Result<(), AuthError> {
        self.check(caller, Need::Write, key, range_end)?;
        if prev_kv {
            self.check(caller, Need::Read, key, range_end)?;
        }
        Ok(())
    }

    /// A txn needs its compares read and both branches allowed, whichever runs.
    pub fn check_txn(
        &self,
        caller: Option<&str>,
        kv: &Mvcc,
        t: &orbit_kv::TxnRequest,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        for c in &t.compare {
            self.check(caller, Need::Read, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match op {
                TxnOp::Range(r) => self.check(caller, Need::Read, &r.key, &r.range_end)?,
                TxnOp::Put(p) => self.check_put(caller, kv, p)?,
                TxnOp::Delete(d) => self.check_delete(caller, &d.key, &d.range_end, d.prev_kv)?,
                TxnOp::Txn(inner) => self.check_txn(caller, kv, inner)?,
            }
        }
        Ok(())
    }

    /// Applies `cmd` from `caller`: what every member does with it at its log
    /// position (so the admin check is against the state it applies to).
    pub fn apply(&mut self, caller: Option<&str>, cmd: &AuthCommand) -> Result<(), AuthError> {
        self.check_admin(caller)?;
        self.apply_checked(cmd)?;
        self.revision += 1;
        Ok(())
    }

    fn apply_checked(&mut self, cmd: &AuthCommand) -> Result<(), AuthError> {
        match cmd {
            AuthCommand::Enable { secret } => {
                if self.enabled {
                    return Ok(());
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.contains(ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                self.secret = *secret;
            }
            AuthCommand::Disable => self.enabled = false,
            AuthCommand::UserAdd { name, password } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                self.users.insert(
                    name.clone(),
                    User {
                        password: password.clone(),
                        roles: BTreeSet::new(),
                    },
                );
            }
            AuthCommand::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
            }
            AuthCommand::UserChangePassword { name, password } => {
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                if user.password.is_some() {
                    user.password = Some(password.clone());
                }
            }
            AuthCommand::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(AuthError::UserNotFound);
                }
                // `root` may be granted before it is added as a role, as etcd allows.
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(AuthError::RoleNotFound);
                }
                let u = self.users.get_mut(user).expect("checked above");
                u.roles.insert(role.clone());
            }
            AuthCommand::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                if !user.roles.remove(role) {
                    return Err(AuthError::RoleNotGranted);
                }
            }
            AuthCommand::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Role::default());
            }
            AuthCommand::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for u in self.users.values_mut() {
                    u.roles.remove(name);
                }
            }
            AuthCommand::RoleGrantPermission { name, perm } => {
                if !valid_range(&perm.key, &perm.range_end) {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                match role
                    .perms
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(p) => p.kind = perm.kind,
                    None => {
                        role.perms.push(perm.clone());
                        role.perms.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
            }
            AuthCommand::RoleRevokePermission {
                name,
                key,
                range_end,
            } => {
                let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                let before = role.perms.len();
                role.perms
                    .retain(|p| !(p.key == *key && p.range_end == *range_end));
                if role.perms.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
        }
        Ok(())
    }

    /// A token for `user`, whose password was just checked against `hash`, valid
    /// `ttl_s` seconds from `now` (Unix seconds). It is void if `hash` is no longer
    /// the user's.
    pub fn mint_token(
        &self,
        user: &str,
        hash: &str,
        now: u64,
        ttl_s: u64,
    ) -> Result<String, AuthError> {
        if !self.enabled {
            return Err(AuthError::NotEnabled);
        }
        let mut payload = Vec::with_capacity(24 + user.len());
        payload.extend_from_slice(&now.saturating_add(ttl_s).to_le_bytes());
        payload.extend_from_slice(&fingerprint(hash));
        payload.extend_from_slice(user.as_bytes());
        let tag = blake3::keyed_hash(&self.secret, &payload);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Ok(format!(
            "{TOKEN_PREFIX}{}.{}",
            b64.encode(&payload),
            b64.encode(tag.as_bytes())
        ))
    }

    /// The user a token stands for, if it is sealed with this state's secret, has not
    /// expired at `now`, and its user still has the password it was made with.
    pub fn verify_token(&self, token: &str, now: u64) -> Result<String, AuthError> {
        let bad = AuthError::InvalidToken;
        let rest = token.strip_prefix(TOKEN_PREFIX).ok_or(bad)?;
        let (payload, tag) = rest.split_once('.').ok_or(bad)?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = b64.decode(payload).map_err(|_| bad)?;
        let tag: [u8; 32] = b64
            .decode(tag)
            .ok()
            .and_then(|t| t.try_into().ok())
            .ok_or(bad)?;
        // blake3::Hash compares in constant time.
        if !self.enabled || blake3::keyed_hash(&self.secret, &payload) != blake3::Hash::from(tag) {
            return Err(bad);
        }
        if payload.len() < 24 {
            return Err(bad);
        }
        let expires = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        let name = std::str::from_utf8(&payload[24..]).map_err(|_| bad)?;
        if now >= expires {
            return Err(bad);
        }
        let user = self.users.get(name).ok_or(bad)?;
        match &user.password {
            Some(h) if fingerprint(h) == payload[8..24] => Ok(name.to_string()),
            _ => Err(bad),
        }
    }
}

/// Seconds since the Unix epoch: the clock tokens expire by (and backups are dated by).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a token holds of the password hash it was made under: a changed password
/// (its hash has a new salt) invalidates the token.
fn fingerprint(hash: &str) -> [u8; 16] {
    let h = blake3::hash(hash.as_bytes());
    h.as_bytes()[..16].try_into().expect("16 bytes")
}

/// The Argon2id hash (PHC string, random salt) of `password`. Slow by design: call
/// it off the async threads.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches `hash`. Slow by design, like [`hash_password`].
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_kv::{PutRequest, TxnRequest};

    fn perm(kind: PermKind, key: &str, end: &[u8]) -> Permission {
        Permission {
            kind,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    /// Auth enabled with root, and `alice` holding role `r` with `perms`.
    fn state(perms: Vec<Permission>) -> AuthState {
        let mut s = AuthState::default();
        let cmds = [
            AuthCommand::UserAdd {
                name: ROOT.into(),
                password: Some(hash_password("rootpw")),
            },
            AuthCommand::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
            AuthCommand::UserAdd {
                name: "alice".into(),
                password: Some(hash_password("alicepw")),
            },
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::UserGrantRole {
                user: "alice".into(),
                role: "r".into(),
            },
        ];
        for c in cmds {
            s.apply(None, &c).unwrap();
        }
        for p in perms {
            s.apply(
                None,
                &AuthCommand::RoleGrantPermission {
                    name: "r".into(),
                    perm: p,
                },
            )
            .unwrap();
        }
        s.apply(None, &AuthCommand::Enable { secret: [7; 32] })
            .unwrap();
        s
    }

    #[test]
    fn ranges_are_allowed_only_when_the_union_of_permissions_covers_them() {
        let s = state(vec![
            perm(PermKind::Read, "a", b"c"),
            perm(PermKind::ReadWrite, "c", b"e"),
            perm(PermKind::Write, "x", b""),
            perm(PermKind::Read, "y", b"\0"),
        ]);
        let ok = |need, k: &str, e: &[u8]| s.check(Some("alice"), need, k.as_bytes(), e).is_ok();
        // Two adjacent permissions cover a range that spans both.
        assert!(ok(Need::Read, "a", b"e"));
        assert!(ok(Need::Read, "b", b""));
        assert!(!ok(Need::Read, "a", b"f"));
        assert!(!ok(Need::Write, "a", b"d"));
        assert!(ok(Need::Write, "c", b"e"));
        // One key; the key itself as a range is the same thing.
        assert!(ok(Need::Write, "x", b""));
        assert!(ok(Need::Write, "x", b"x\0"));
        assert!(!ok(Need::Write, "x", b"y"));
        assert!(!ok(Need::Read, "x", b""));
        // From a key on.
        assert!(ok(Need::Read, "zzz", b""));
        assert!(ok(Need::Read, "y", b"\0"));
        assert!(!ok(Need::Read, "e", b"\0"));
        // Root may do anything; no user, nothing; an unknown user, nothing.
        assert!(s.check(Some(ROOT), Need::Write, b"\0", b"\0").is_ok());
        assert_eq!(
            s.check(None, Need::Read, b"a", b""),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(
            s.check(Some("mallory"), Need::Read, b"a", b""),
            Err(AuthError::PermissionDenied)
        );
        // Disabled: no checks.
        let mut off = s.clone();
        off.apply(Some(ROOT), &AuthCommand::Disable).unwrap();
        assert!(off.check(None, Need::Write, b"q", b"").is_ok());
    }

    #[test]
    fn a_txn_needs_both_branches_and_its_compares() {
        let s = state(vec![perm(PermKind::ReadWrite, "a", b"b")]);
        let kv = Mvcc::default();
        let mut t = TxnRequest::default();
        t.success.push(TxnOp::Put(PutRequest::new("a1", "v")));
        assert!(s.check_txn(Some("alice"), &kv, &t).is_ok());
        t.failure.push(TxnOp::Put(PutRequest::new("z", "v")));
        assert_eq!(
            s.check_txn(Some("alice"), &kv, &t),
            Err(AuthError::PermissionDenied)
        );
    }

    #[test]
    fn management_follows_etcd() {
        let mut s = state(vec![]);
        // Only root manages once enabled.
        let add = AuthCommand::RoleAdd { name: "x".into() };
        assert_eq!(
            s.apply(Some("alice"), &add),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(s.apply(None, &add), Err(AuthError::UserEmpty));
        assert_eq!(s.apply(Some("nobody"), &add), Err(AuthError::UserNotFound));
        s.apply(Some(ROOT), &add).unwrap();
        assert_eq!(s.apply(Some(ROOT), &add), Err(AuthError::RoleAlreadyExist));
        // Root cannot lock itself out while enabled.
        for c in [
            AuthCommand::UserDelete { name: ROOT.into() },
            AuthCommand::RoleDelete { name: ROOT.into() },
            AuthCommand::UserRevokeRole {
                name: ROOT.into(),
                role: ROOT.into(),
            },
        ] {
            assert_eq!(s.apply(Some(ROOT), &c), Err(AuthError::InvalidAuthMgmt));
        }
        // A bad permission range; revoking what is not there.
        let bad = AuthCommand::RoleGrantPermission {
            name: "x".into(),
            perm: perm(PermKind::Read, "b", b"a"),
        };
        assert_eq!(s.apply(Some(ROOT), &bad), Err(AuthError::InvalidAuthMgmt));
        let revoke = AuthCommand::RoleRevokePermission {
            name: "x".into(),
            key: b"b".to_vec(),
            range_end: vec![],
        };
        assert_eq!(
            s.apply(Some(ROOT), &revoke),
            Err(AuthError::PermissionNotGranted)
        );
        // Deleting a role takes it from its users.
        s.apply(Some(ROOT), &AuthCommand::RoleDelete { name: "r".into() })
            .unwrap();
        assert!(s.users["alice"].roles.is_empty());
        // Enable needs root with the root role.
        let mut fresh = AuthState::default();
        assert_eq!(
            fresh.apply(None, &AuthCommand::Enable { secret: [1; 32] }),
            Err(AuthError::RootUserNotExist)
        );
        fresh
            .apply(
                None,
                &AuthCommand::UserAdd {
                    name: ROOT.into(),
                    password: None,
                },
            )
            .unwrap();
        assert_eq!(
            fresh.apply(None, &AuthCommand::Enable { secret: [1; 32] }),
            Err(AuthError::RootRoleNotExist)
        );
    }

    #[test]
    fn tokens_die_with_expiry_a_new_password_a_deleted_user_and_a_disable() {
        let mut s = state(vec![]);
        let mint = |s: &AuthState| {
            let h = s.users["alice"].password.clone().unwrap();
            s.mint_token("alice", &h, 1000, 300).unwrap()
        };
        let t = mint(&s);
        assert_eq!(s.verify_token(&t, 1299).unwrap(), "alice");
        assert_eq!(s.verify_token(&t, 1300), Err(AuthError::InvalidToken));
        // Forged: another user's name under the same tag, or a flipped byte.
        let forged = t.replace("YWxpY2U", "cm9vdA");
        assert_eq!(s.verify_token(&forged, 1001), Err(AuthError::InvalidToken));
        let mut flipped = t.clone().into_bytes();
        let i = flipped.len() - 3;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(s.verify_token(&flipped, 1001), Err(AuthError::InvalidToken));
        assert_eq!(
            s.verify_token("garbage", 1001),
            Err(AuthError::InvalidToken)
        );
        // A password change.
        s.apply(
            Some(ROOT),
            &AuthCommand::UserChangePassword {
                name: "alice".into(),
                password: hash_password("new"),
            },
        )
        .unwrap();
        assert_eq!(s.verify_token(&t, 1001), Err(AuthError::InvalidToken));
        let t2 = mint(&s);
        assert!(s.verify_token(&t2, 1001).is_ok());
        // Disable, enable again: a new secret.
        s.apply(Some(ROOT), &AuthCommand::Disable).unwrap();
        assert_eq!(s.verify_token(&t2, 1001), Err(AuthError::InvalidToken));
        s.apply(None, &AuthCommand::Enable { secret: [8; 32] })
            .unwrap();
        assert_eq!(s.verify_token(&t2, 1001), Err(AuthError::InvalidToken));
        // A deleted user.
        let t3 = mint(&s);
        s.apply(
            Some(ROOT),
            &AuthCommand::UserDelete {
                name: "alice".into(),
            },
        )
        .unwrap();
        assert_eq!(s.verify_token(&t3, 1001), Err(AuthError::InvalidToken));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horse ", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse"), "salted");
    }
}
