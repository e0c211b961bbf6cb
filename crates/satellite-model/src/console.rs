//! The console's accounts, sessions, projects and API keys (seed 003's console), kept
//! in the store like everything else, so any API replica answers any request and a
//! session outlives the replica that made it.
//!
//! - Passwords are Argon2id hashes (PHC strings); a wrong password and an unknown email
//!   cost the same hash and get the same answer.
//! - Sessions, confirmation and reset tokens are random 32-byte secrets the store
//!   holds only as BLAKE3 hashes, each under a lease that ends it.
//! - Failed logins count per email under a lease of the window; past the limit, that
//!   email's logins are refused until the window ends, whatever the password.
//! - A console project belongs to one account, under the owner's key space: another
//!   account's project id is simply not found.

use crate::apikeys::ApiKeys;
use crate::keys::{self, Project};
use crate::Error;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use orbit_identity::hex_encode;
use orbit_kv::record::{decode, encode, Versioned};
use orbit_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Kv, PutRequest, RangeRequest, TxnOp,
    TxnRequest,
};
use orbit_protocol::apikey::{ApiKey, Caveat};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The console's rules, from its configuration.
#[derive(Clone, Debug)]
pub struct Rules {
    /// How long a session lasts, seconds.
    pub session_ttl_s: i64,
    /// How long a confirmation or reset link works, seconds.
    pub token_ttl_s: i64,
    /// Failed logins allowed per email within the window.
    pub login_failures: u32,
    /// The window failed logins are counted in, seconds.
    pub login_window_s: i64,
    /// Projects one account may have.
    pub max_projects: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            session_ttl_s: 7 * 24 * 3600,
            token_ttl_s: 24 * 3600,
            login_failures: 5,
            login_window_s: 15 * 60,
            max_projects: 10,
        }
    }
}

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its id: 32 hex digits.
    pub id: String,
    /// Its email, as given (normalized for lookups).
    pub email: String,
    /// Argon2id PHC string.
    pub password: String,
    /// Whether the email was confirmed.
    pub confirmed: bool,
    /// Unix time (s) of sign-up.
    pub created: u64,
    /// The payments wallet address whose balance and channels the console shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<String>,
}

impl Versioned for Account {
    const NAME: &'static str = "console account";
    const VERSION: u32 = 1;
}

/// The email index: which account has an email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EmailEntry {
    account: String,
}

impl Versioned for EmailEntry {
    const NAME: &'static str = "console email entry";
    const VERSION: u32 = 1;
}

/// A session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Whose.
    pub account: String,
    /// The token every state-changing request must carry besides the cookie.
    pub csrf: String,
    /// Unix time (s) it ends (its lease ends it too).
    pub expires: u64,
}

impl Versioned for Session {
    const NAME: &'static str = "console session";
    const VERSION: u32 = 1;
}

/// What a mailed token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// Confirms the sign-up's email.
    Confirm,
    /// Sets a new password.
    Reset,
}

/// A mailed token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Token {
    account: String,
    purpose: Purpose,
    expires: u64,
}

impl Versioned for Token {
    const NAME: &'static str = "console token";
    const VERSION: u32 = 1;
}

/// Failed logins in the current window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Failures {
    count: u32,
    /// Unix time (s) the window ends.
    until: u64,
}

impl Versioned for Failures {
    const NAME: &'static str = "console login failures";
    const VERSION: u32 = 1;
}

/// A console project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleProject {
    /// Its id: the project name API keys and buckets use.
    pub id: String,
    /// The name its owner gave it (any text; shown escaped).
    pub name: String,
    /// Unix time (s) it was made.
    pub created: u64,
}

impl Versioned for ConsoleProject {
    const NAME: &'static str = "console project";
    const VERSION: u32 = 1;
}

/// An API key the console made (its secret is with the satellite's API keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Its head, hex: the key's id.
    pub head: String,
    /// The name its owner gave it.
    pub name: String,
    /// Unix time (s) it was made.
    pub created: u64,
    /// Its caveats.
    pub caveats: Vec<Caveat>,
    /// Unix time (s) it was revoked, if it was.
    pub revoked: Option<u64>,
}

impl Versioned for KeyEntry {
    const NAME: &'static str = "console API key";
    const VERSION: u32 = 1;
}

/// A wallet's standing on the escrow, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Billing {
    /// The wallet's address.
    pub wallet: String,
    /// Funds not locked in a channel.
    pub balance: u64,
    /// The channels it opened: value left, the amount authorized for the current
    /// nonce (what it has paid since the last claim), expiration.
    pub channels: Vec<orbit_payments::Channel>,
}

/// A new session's secrets, for the cookie and the page.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The cookie's value: `<account id>.<token>`.
    pub cookie: String,
    /// The CSRF token.
    pub csrf: String,
    /// Unix time (s) it ends.
    pub expires: u64,
}

/// The console's model over the store.
#[derive(Clone)]
pub struct Console {
    kv: Arc<dyn Kv>,
    rules: Rules,
    keys: ApiKeys,
    /// A hash to verify against when the email is unknown, so both cost the same.
    decoy: String,
}

fn random_hex(bytes: usize) -> String {
    let b: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex_encode(&b)
}

/// Emails are compared trimmed and lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn check_email(email: &str) -> Result<(), Error> {
    let e = email.trim();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{:?} is not an email address",
            e.chars().take(80).collect::<String>()
        )))
    }
}

fn check_password(password: &str) -> Result<(), Error> {
    let n = password.chars().count();
    if !(10..=1024).contains(&n) {
        return Err(Error::Invalid(
            "a password has 10 to 1024 characters".into(),
        ));
    }
    Ok(())
}

/// A display name: 1 to 64 characters, no control characters.
fn check_name(what: &str, name: &str) -> Result<String, Error> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "a {what} name has 1 to 64 characters and no control characters"
        )));
    }
    Ok(name.to_string())
}

/// An account id as the model makes them: 32 lowercase hex digits. Anything else
/// (from a cookie) is refused before it reaches a key.
fn check_account_id(id: &str) -> Result<(), Error> {
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::Unauthenticated("not a session: log in".into()))
    }
}

fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

impl Console {
    /// The console over `kv` with `rules`.
    pub fn new(kv: Arc<dyn Kv>, rules: Rules) -> Console {
        Console {
            keys: ApiKeys::new(kv.clone()),
            kv,
            rules,
            decoy: hash_password("no account has this password").unwrap_or_default(),
        }
    }

    /// Its rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn get<T: Versioned>(&self, key: &str) -> Result<Option<(T, i64)>, Error> {
        let got = self.kv.range(RangeRequest::key(key)).await?;
        match got.kvs.first() {
            None => Ok(None),
            Some(kv) => Ok(Some((decode(&kv.key, &kv.value)?, kv.mod_revision))),
        }
    }

    async fn lease(&self, ttl: i64) -> Result<i64, Error> {
        Ok(self.kv.lease_grant(ttl.max(1), 0).await?.id)
    }

    /// Signs up `email` with `password`; returns the account and the token its
    /// confirmation link carries.
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
        now: u64,
    ) -> Result<(Account, String), Error> {
        check_email(email)?;
        check_password(password)?;
        let normalized = normalize_email(email);
        let account = Account {
            id: random_hex(16),
            email: email.trim().to_string(),
            password: hash_password(password)?,
            confirmed: false,
            created: now,
            wallet: None,
        };
        let index = keys::console_email(&normalized);
        let put = TxnRequest {
            compare: vec![Compare::new(
                index.clone(),
                CompareOp::Equal,
                CompareTarget::Create(0),
            )],
            success: vec![
                TxnOp::Put(PutRequest::new(
                    index,
                    encode(&EmailEntry {
                        account: account.id.clone(),
                    }),
                )),
                TxnOp::Put(PutRequest::new(
                    keys::console_account(&account.id),
                    encode(&account),
                )),
            ],
            failure: vec![],
        };
        if !self.kv.txn(put).await?.succeeded {
            return Err(Error::Exists(
                "an account with this email exists: log in, or reset its password".into(),
            ));
        }
        let token = self.token(&account.id, Purpose::Confirm, now).await?;
        Ok((account, token))
    }

    async fn token(&self, account: &str, purpose: Purpose, now: u64) -> Result<String, Error> {
        let token = random_hex(32);
        let lease = self.lease(self.rules.token_ttl_s).await?;
        let rec = Token {
            account: account.to_string(),
            purpose,
            expires: now + self.rules.token_ttl_s as u64,
        };
        self.kv
            .put(PutRequest {
                lease,
                ..PutRequest::new(keys::console_token(&token), encode(&rec))
            })
            .await?;
        Ok(token)
    }

    /// Takes a mailed token for `purpose` (once); returns its account id.
    async fn take_token(&self, token: &str, purpose: Purpose, now: u64) -> Result<String, Error> {
        let key = keys::console_token(token);
        let bad = || Error::Invalid("this link is not valid any more: ask for a new one".into());
        let Some((t, rev)) = self.get::<Token>(&key).await? else {
            return Err(bad());
        };
        if t.purpose != purpose || t.expires < now {
            return Err(bad());
        }
        let del = TxnRequest::if_unchanged(
            key.clone(),
            rev,
            vec![TxnOp::Delete(DeleteRequest::key(key))],
        );
        if !self.kv.txn(del).await?.succeeded {
            return Err(bad());
        }
        Ok(t.account)
    }

    /// Reads an account with its revision.
    async fn account(&self, id: &str) -> Result<(Account, i64), Error> {
        check_account_id(id)?;
        self.get::<Account>(&keys::console_account(id))
            .await?
            .ok_or_else(|| Error::Unauthenticated("no such account: log in again".into()))
    }

    /// Writes `f(account)` back unless it changed meanwhile (then again).
    async fn update_account(&self, id: &str, f: impl Fn(&mut Account)) -> Result<Account, Error> {
        for _ in 0..8 {
            let (mut a, rev) = self.account(id).await?;
            f(&mut a);
            let key = keys::console_account(id);
            let put = TxnRequest::if_unchanged(
                key.clone(),
                rev,
                vec![TxnOp::Put(PutRequest::new(key, encode(&a)))],
            );
            if self.kv.txn(put).await?.succeeded {
                return Ok(a);
            }
        }
        Err(Error::Unavailable(
            "the account keeps changing; try again".into(),
        ))
    }

    /// Confirms the email a confirmation token was sent to.
    pub async fn confirm(&self, token: &str, now: u64) -> Result<Account, Error> {
        let id = self.take_token(token, Purpose::Confirm, now).await?;
        self.update_account(&id, |a| a.confirmed = true).await
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>, Error> {
        let normalized = normalize_email(email);
        let Some((e, _)) = self
            .get::<EmailEntry>(&keys::console_email(&normalized))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(self.account(&e.account).await?.0))
    }

    /// Logs in: checks the rate limit and the password, makes a session.
    pub async fn log_in(&self, email: &str, password: &str, now: u64) -> Result<NewSession, Error> {
        let normalized = normalize_email(email);
        let counter = keys::console_logins(&normalized);
        if let Some((f, _)) = self.get::<Failures>(&counter).await? {
            if f.count >= self.rules.login_failures && f.until > now {
                return Err(Error::LimitExceeded(format!(
                    "too many failed logins for this email: try again in {} minutes, or reset the password",
                    (f.until - now).div_ceil(60)
                )));
            }
        }
        let account = self.account_by_email(email).await?;
        let hash = account
            .as_ref()
            .map_or(self.decoy.as_str(), |a| &a.password);
        let matches = password_matches(password, hash);
        let Some(account) = account.filter(|_| matches) else {
            self.count_failure(&counter, now).await?;
            return Err(Error::Unauthenticated("wrong email or password".into()));
        };
        if !account.confirmed {
            return Err(Error::Forbidden(
                "confirm your email first: follow the link in the message we sent".into(),
            ));
        }
        self.kv.delete(DeleteRequest::key(counter)).await?;
        self.new_session(&account.id, now).await
    }

    async fn count_failure(&self, counter: &str, now: u64) -> Result<(), Error> {
        for _ in 0..8 {
            let got = self.get::<Failures>(counter).await?;
            let (next, rev, lease) = match got {
                Some((f, rev)) if f.until > now => (
                    Failures {
                        count: f.count + 1,
                        until: f.until,
                    },
                    rev,
                    None,
                ),
                other => (
                    Failures {
                        count: 1,
                        until: now + self.rules.login_window_s as u64,
                    },
                    other.map_or(0, |(_, r)| r),
                    Some(self.lease(self.rules.login_window_s).await?),
                ),
            };
            let put = PutRequest {
                lease: lease.unwrap_or(0),
                // A count within the window keeps the window's lease.
                ignore_lease: lease.is_none(),
                ..PutRequest::new(counter, encode(&next))
            };
            if self
                .kv
                .txn(TxnRequest::if_unchanged(
                    counter,
                    rev,
                    vec![TxnOp::Put(put)],
                ))
                .await?
                .succeeded
            {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn new_session(&self, account: &str, now: u64) -> Result<NewSession, Error> {
        let token = random_hex(32);
        let session = Session {
            account: account.to_string(),
            csrf: random_hex(32),
            expires: now + self.rules.session_ttl_s as u64,
        };
        let lease = self.lease(self.rules.session_ttl_s).await?;
        self.kv
            .put(PutRequest {
                lease,
                ..PutRequest::new(keys::console_session(account, &token), encode(&session))
            })
            .await?;
        Ok(NewSession {
            cookie: format!("{account}.{token}"),
            csrf: session.csrf,
            expires: session.expires,
        })
    }

    /// The session and account a cookie names, while the session lasts.
    pub async fn session(&self, cookie: &str, now: u64) -> Result<(Session, Account), Error> {
        let (account, token) = cookie
            .split_once('.')
            .ok_or_else(|| Error::Unauthenticated("not a session: log in".into()))?;
        check_account_id(account)?;
        let Some((s, _)) = self
            .get::<Session>(&keys::console_session(account, token))
            .await?
        else {
            return Err(Error::Unauthenticated(
                "the session has ended: log in again".into(),
            ));
        };
        if s.expires <= now || s.account != account {
            return Err(Error::Unauthenticated(
                "the session has ended: log in again".into(),
            ));
        }
        Ok((s, self.account(account).await?.0))
    }

    /// Ends the session a cookie names.
    pub async fn log_out(&self, cookie: &str) -> Result<(), Error> {
        if let Some((account, token)) = cookie.split_once('.') {
            check_account_id(account)?;
            self.kv
                .delete(DeleteRequest::key(keys::console_session(account, token)))
                .await?;
        }
        Ok(())
    }

    /// Changes `account`'s password after checking the current one; ends every
    /// session of the account and returns a new one for the caller.
    pub async fn change_password(
        &self,
        account: &str,
        current: &str,
        new: &str,
        now: u64,
    ) -> Result<NewSession, Error> {
        check_password(new)?;
        let (a, _) = self.account(account).await?;
        if !password_matches(current, &a.password) {
            return Err(Error::Unauthenticated(
                "the current password is wrong".into(),
            ));
        }
        self.set_password(account, new).await?;
        self.new_session(account, now).await
    }

    async fn set_password(&self, account: &str, new: &str) -> Result<(), Error> {
        let hash = hash_password(new)?;
        self.update_account(account, |a| a.password = hash.clone())
            .await?;
        self.kv
            .delete(DeleteRequest::prefix(keys::console_sessions_of(account)))
            .await?;
        Ok(())
    }

    /// A reset token for the account with `email`, if there is one (the caller
    /// answers the same either way).
    pub async fn request_reset(
        &self,
        email: &str,
        now: u64,
    ) -> Result<Option<(Account, String)>, Error> {
        let Some(a) = self.account_by_email(email).await? else {
            return Ok(None);
        };
        let token = self.token(&a.id, Purpose::Reset, now).await?;
        Ok(Some((a, token)))
    }

    /// Sets a new password with a reset token; every session of the account ends.
    pub async fn reset_password(&self, token: &str, new: &str, now: u64) -> Result<(), Error> {
        check_password(new)?;
        let id = self.take_token(token, Purpose::Reset, now).await?;
        self.set_password(&id, new).await?;
        // Following the mailed link proves the email as well.
        self.update_account(&id, |a| a.confirmed = true).await?;
        Ok(())
    }

    /// Links `account` to the payments wallet `address` (`0x` and 40 hex digits), or
    /// unlinks it with `None`. Balances are public on the ledger, so linking another's
    /// address shows nothing it does not already.
    pub async fn set_wallet(&self, account: &str, address: Option<&str>) -> Result<Account, Error> {
        let wallet = match address {
            None => None,
            Some(a) => Some(
                orbit_payments::Address::parse(a.trim())
                    .map_err(|e| Error::Invalid(format!("wallet address: {e}")))?
                    .to_string(),
            ),
        };
        self.update_account(account, |a| a.wallet = wallet.clone())
            .await
    }

    /// `account`'s wallet on `escrow`: its balance and the channels it opened.
    pub async fn billing(
        &self,
        account: &Account,
        escrow: &orbit_payments::Escrow,
    ) -> Result<Option<Billing>, Error> {
        let Some(w) = &account.wallet else {
            return Ok(None);
        };
        let address = orbit_payments::Address::parse(w)
            .map_err(|e| Error::Internal(format!("stored wallet address: {e}")))?;
        let pay = |e: orbit_payments::PayError| Error::Unavailable(format!("payments: {e}"));
        let balance = escrow.account(&address).await.map_err(pay)?.balance;
        let channels = escrow.channels_of(&address).await.map_err(pay)?;
        Ok(Some(Billing {
            wallet: address.to_string(),
            balance,
            channels,
        }))
    }

    /// `owner`'s projects, oldest first.
    pub async fn projects(&self, owner: &str) -> Result<Vec<ConsoleProject>, Error> {
        check_account_id(owner)?;
        let got = self
            .kv
            .range(RangeRequest::prefix(keys::console_projects_of(owner)))
            .await?;
        let mut out = got
            .kvs
            .iter()
            .map(|kv| decode::<ConsoleProject>(&kv.key, &kv.value).map_err(Error::from))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// `owner`'s project `id`, with its revision; another account's is not found.
    pub async fn project(&self, owner: &str, id: &str) -> Result<(ConsoleProject, i64), Error> {
        check_account_id(owner)?;
        let not_found = || {
            Error::NotFound(format!(
                "no project {:?}",
                id.chars().take(80).collect::<String>()
            ))
        };
        let p = Project::new(id).map_err(|_| not_found())?;
        self.get::<ConsoleProject>(&keys::console_project(owner, &p))
            .await?
            .ok_or_else(not_found)
    }

    /// Makes a project for `owner`.
    pub async fn create_project(
        &self,
        owner: &str,
        name: &str,
        now: u64,
    ) -> Result<ConsoleProject, Error> {
        let name = check_name("project", name)?;
        if self.projects(owner).await?.len() >= self.rules.max_projects {
            return Err(Error::LimitExceeded(format!(
                "an account has at most {} projects",
                self.rules.max_projects
            )));
        }
        let p = ConsoleProject {
            id: format!("p{}", random_hex(12)),
            name,
            created: now,
        };
        let key = keys::console_project(owner, &Project::new(&p.id)?);
        let put = TxnRequest::if_unchanged(
            key.clone(),
            0,
            vec![TxnOp::Put(PutRequest::new(key, encode(&p)))],
        );
        if !self.kv.txn(put).await?.succeeded {
            return Err(Error::Unavailable("project id taken; try again".into()));
        }
        Ok(p)
    }

    /// Renames `owner`'s project `id`.
    pub async fn rename_project(
        &self,
        owner: &str,
        id: &str,
        name: &str,
    ) -> Result<ConsoleProject, Error> {
        let name = check_name("project", name)?;
        let (mut p, rev) = self.project(owner, id).await?;
        p.name = name;
        let key = keys::console_project(owner, &Project::new(&p.id)?);
        let put = TxnRequest::if_unchanged(
            key.clone(),
            rev,
            vec![TxnOp::Put(PutRequest::new(key, encode(&p)))],
        );
        if !self.kv.txn(put).await?.succeeded {
            return Err(Error::Unavailable(
                "the project changed meanwhile; try again".into(),
            ));
        }
        Ok(p)
    }

    /// Deletes `owner`'s project `id` if it holds no bucket; its API keys are revoked.
    pub async fn delete_project(&self, owner: &str, id: &str, now: u64) -> Result<(), Error> {
        let (p, rev) = self.project(owner, id).await?;
        let project = Project::new(&p.id)?;
        let mut any = RangeRequest::prefix(keys::buckets_of(&project));
        any.limit = 1;
        any.keys_only = true;
        if !self.kv.range(any).await?.kvs.is_empty() {
            return Err(Error::Precondition(
                "the project still has buckets: delete them first".into(),
            ));
        }
        for k in self.api_keys(owner, id).await? {
            if k.revoked.is_none() {
                self.revoke_key(owner, id, &k.head, now).await?;
            }
        }
        let key = keys::console_project(owner, &project);
        let del = TxnRequest::if_unchanged(
            key.clone(),
            rev,
            vec![
                TxnOp::Delete(DeleteRequest::key(key)),
                TxnOp::Delete(DeleteRequest::prefix(keys::console_keys_of(&project))),
            ],
        );
        if !self.kv.txn(del).await?.succeeded {
            return Err(Error::Unavailable(
                "the project changed meanwhile; try again".into(),
            ));
        }
        Ok(())
    }

    /// Makes an API key for `owner`'s project `id` with `caveats`; returns its entry
    /// and the key (shown once).
    pub async fn create_key(
        &self,
        owner: &str,
        id: &str,
        name: &str,
        caveats: Vec<Caveat>,
        now: u64,
    ) -> Result<(KeyEntry, String), Error> {
        let name = check_name("key", name)?;
        let (p, _) = self.project(owner, id).await?;
        for c in &caveats {
            if let Caveat::Prefix { bucket, .. } = c {
                keys::Bucket::new(bucket)?;
            }
        }
        let mut key: ApiKey = self.keys.create(&p.id).await?;
        for c in &caveats {
            key = key.restrict(c.clone());
        }
        let entry = KeyEntry {
            head: hex_encode(&key.head),
            name,
            created: now,
            caveats,
            revoked: None,
        };
        self.kv
            .put(PutRequest::new(
                keys::console_key(&Project::new(&p.id)?, &key.head),
                encode(&entry),
            ))
            .await?;
        Ok((entry, key.serialize()))
    }

    /// The API keys the console made for `owner`'s project `id`, oldest first.
    pub async fn api_keys(&self, owner: &str, id: &str) -> Result<Vec<KeyEntry>, Error> {
        let (p, _) = self.project(owner, id).await?;
        let got = self
            .kv
            .range(RangeRequest::prefix(keys::console_keys_of(&Project::new(
                &p.id,
            )?)))
            .await?;
        let mut out = got
            .kvs
            .iter()
            .map(|kv| decode::<KeyEntry>(&kv.key, &kv.value).map_err(Error::from))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.created, &a.head).cmp(&(b.created, &b.head)));
        Ok(out)
    }

    /// Revokes the key `head` of `owner`'s project `id`, and every key restricted from it.
    pub async fn revoke_key(
        &self,
        owner: &str,
        id: &str,
        head: &str,
        now: u64,
    ) -> Result<KeyEntry, Error> {
        let (p, _) = self.project(owner, id).await?;
        let project = Project::new(&p.id)?;
        let head_bytes: [u8; 16] = orbit_identity::hex_decode(head)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::NotFound("no such key".into()))?;
        let key = keys::console_key(&project, &head_bytes);
        let Some((mut entry, rev)) = self.get::<KeyEntry>(&key).await? else {
            return Err(Error::NotFound("no such key".into()));
        };
        // The unrestricted key's tag revokes the key and every restriction of it.
        let base = self.keys.unrestricted(&head_bytes).await?;
        self.keys.revoke(&base, now).await?;
        entry.revoked = Some(now);
        let put = TxnRequest::if_unchanged(
            key.clone(),
            rev,
            vec![TxnOp::Put(PutRequest::new(key, encode(&entry)))],
        );
        let _ = self.kv.txn(put).await?;
        Ok(entry)
    }
}
