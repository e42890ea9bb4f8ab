//! Team access in the core: roles, who acts (an [`Actor`]), what each
//! action needs, and the audit log every face writes through. A face says
//! who is calling; the core decides whether the role may, and records the
//! action — allowed or refused — the same way for the CLI and `serve`.
//!
//! Passwords are kept as argon2id PHC strings; API tokens as the SHA-256
//! of their value (32 random bytes: nothing to brute-force, so a fast
//! hash is right and a lookup is one indexed read). Neither is ever
//! stored, logged or shown in clear (a token is printed once, at `add`).

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{usage, CoreError, Reader, Workspace};
use crate::store::{AuditRecord, NewAudit, Store, StoreError, TokenRecord, UserRecord};

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read: campaigns, reports, the audit log.
    Viewer,
    /// Also upload, start, pause, decide rows in doubt.
    Operator,
    /// Also users and API tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Role, CoreError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(usage(format!(
                "role `{other}`: use viewer, operator or admin"
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    /// A named user (signed in with a password).
    User,
    /// A named API token.
    Token,
    /// `ZNS_SERVE_TOKEN` (bearer or the token sign-in): an admin.
    AdminToken,
    /// The command line, as the OS user running it.
    Os,
    /// `serve` on loopback with no token and no users: anyone local.
    Local,
}

/// Who is acting, and with which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
    pub role: Role,
}

impl Actor {
    pub fn user(name: &str, role: Role) -> Actor {
        Actor {
            kind: ActorKind::User,
            name: name.into(),
            role,
        }
    }
    pub fn token(name: &str, role: Role) -> Actor {
        Actor {
            kind: ActorKind::Token,
            name: name.into(),
            role,
        }
    }
    pub fn admin_token() -> Actor {
        Actor {
            kind: ActorKind::AdminToken,
            name: String::new(),
            role: Role::Admin,
        }
    }
    pub fn local() -> Actor {
        Actor {
            kind: ActorKind::Local,
            name: String::new(),
            role: Role::Admin,
        }
    }
    /// The command line: whoever can run it can open the state database
    /// anyway, so it acts as an admin; the entry names the OS user.
    pub fn os_user() -> Actor {
        Actor {
            kind: ActorKind::Os,
            name: os_user_name(),
            role: Role::Admin,
        }
    }

    /// As the audit log names it: `user:anh`, `token:nightly`,
    /// `admin-token`, `os:root`, `local`.
    pub fn label(&self) -> String {
        match self.kind {
            ActorKind::User => format!("user:{}", self.name),
            ActorKind::Token => format!("token:{}", self.name),
            ActorKind::AdminToken => "admin-token".into(),
            ActorKind::Os => format!("os:{}", self.name),
            ActorKind::Local => "local".into(),
        }
    }
}

/// $USER, else $LOGNAME, else the uid.
fn os_user_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return v.trim().to_string();
        }
    }
    #[cfg(unix)]
    {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        format!("uid{uid}")
    }
    #[cfg(not(unix))]
    {
        "unknown".into()
    }
}

/// Everything that changes something, and the role it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Upload,
    Start,
    Pause,
    /// Resend or hold rows whose reply was lost.
    InDoubt,
    /// A start at a later time.
    Schedule,
    /// The campaign's message to a few test phones.
    TestSend,
    /// Connect the Zalo OA (the console's Connect OA page).
    ZaloConnect,
    UserAdd,
    UserRemove,
    UserPasswd,
    UserRole,
    TokenAdd,
    TokenRevoke,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Upload => "upload",
            Action::Start => "start",
            Action::Pause => "pause",
            Action::InDoubt => "in-doubt",
            Action::Schedule => "schedule",
            Action::TestSend => "test-send",
            Action::ZaloConnect => "zalo-connect",
            Action::UserAdd => "user-add",
            Action::UserRemove => "user-remove",
            Action::UserPasswd => "user-passwd",
            Action::UserRole => "user-role",
            Action::TokenAdd => "token-add",
            Action::TokenRevoke => "token-revoke",
        }
    }

    pub fn needs(self) -> Role {
        match self {
            Action::Upload
            | Action::Start
            | Action::Pause
            | Action::InDoubt
            | Action::Schedule
            | Action::TestSend => Role::Operator,
            Action::ZaloConnect
            | Action::UserAdd
            | Action::UserRemove
            | Action::UserPasswd
            | Action::UserRole
            | Action::TokenAdd
            | Action::TokenRevoke => Role::Admin,
        }
    }
}

/// One audit entry as the faces show it (`audit --json`, the API).
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub campaign: Option<String>,
    pub detail: String,
    pub outcome: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(r.at_ms as i128 * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        AuditEntry {
            id: r.id,
            at,
            actor: r.actor,
            action: r.action,
            campaign: r.campaign,
            detail: r.detail,
            outcome: r.outcome,
        }
    }
}

/// A user as `users list` shows it: never the hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserLine {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
}

/// A token as `tokens list` shows it: never the value nor its hash.
#[derive(Debug, Clone, Serialize)]
pub struct TokenLine {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
    pub revoked: bool,
}

impl From<UserRecord> for UserLine {
    fn from(u: UserRecord) -> Self {
        UserLine {
            name: u.name,
            role: u.role,
            created_ms: u.created_ms,
        }
    }
}

impl From<TokenRecord> for TokenLine {
    fn from(t: TokenRecord) -> Self {
        TokenLine {
            name: t.name,
            role: t.role,
            created_ms: t.created_ms,
            revoked: t.revoked_ms.is_some(),
        }
    }
}

/// The most entries one read returns.
pub const AUDIT_MAX_LIMIT: u64 = 1000;
pub const MIN_PASSWORD_CHARS: usize = 8;
const TOKEN_PREFIX: &str = "zns_";

/// Names of users and tokens: short, no blanks or separators that would
/// make `user:NAME` ambiguous in the log.
pub fn check_member_name(what: &str, name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} name `{name}`: use 1-64 letters, digits, . _ - or @ (e.g. anh.nguyen)"
        )))
    }
}

fn hash_password(password: &str) -> Result<String, CoreError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(usage(format!(
            "the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| CoreError::Fatal(anyhow::anyhow!("password salt: {e}")))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| CoreError::Fatal(anyhow::anyhow!("password hash: {e}")))?
        .to_string())
}

/// SHA-256 of a token's value, hex.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Whom a sign-in or a bearer token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(Actor),
    Revoked(String),
    Unknown,
}

fn write_audit(
    store: &mut Store,
    actor: &Actor,
    action: &str,
    campaign: Option<&str>,
    detail: &str,
    outcome: &str,
) -> Result<(), CoreError> {
    store.append_audit(&NewAudit {
        actor: &actor.label(),
        action,
        campaign,
        detail,
        outcome,
    })?;
    Ok(())
}

impl Workspace {
    /// May `actor` do `action`? A refusal is recorded (outcome `refused`)
    /// and comes back as [`CoreError::Forbidden`].
    pub fn permit(
        &self,
        actor: &Actor,
        action: Action,
        campaign: Option<&str>,
    ) -> Result<(), CoreError> {
        if actor.role >= action.needs() {
            return Ok(());
        }
        let why = format!(
            "{} needs the {} role; {} is {}",
            action.as_str(),
            action.needs(),
            actor.label(),
            actor.role
        );
        self.record(actor, action, campaign, &why, "refused")?;
        tracing::warn!(actor = %actor.label(), action = action.as_str(), "refused: {why}");
        // The code stays `forbidden`: the API's scripts match on it.
        Err(CoreError::Forbidden(crate::model::reason::Reason::new(
            "forbidden",
            [
                ("action", action.as_str().to_string()),
                ("needs", action.needs().to_string()),
                ("who", actor.label()),
                ("role", actor.role.to_string()),
            ],
            why,
        )))
    }

    /// Record an action that was allowed and done.
    pub fn audit(
        &self,
        actor: &Actor,
        action: Action,
        campaign: Option<&str>,
        detail: &str,
    ) -> Result<(), CoreError> {
        self.record(actor, action, campaign, detail, "allowed")
    }

    fn record(
        &self,
        actor: &Actor,
        action: Action,
        campaign: Option<&str>,
        detail: &str,
        outcome: &str,
    ) -> Result<(), CoreError> {
        write_audit(
            &mut self.open_store()?,
            actor,
            action.as_str(),
            campaign,
            detail,
            outcome,
        )
    }

    /// Newest first, at most `limit` (capped), older than the entry `before`.
    pub fn audit_list(
        &self,
        campaign: Option<&str>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, CoreError> {
        self.list_existing(|store| audit_page(store, campaign, before, limit))
    }

    /// The role check of a user or token change; what it returns makes the
    /// change and writes its audit entry, under the same action.
    fn permit_member<'a>(
        &'a self,
        actor: &'a Actor,
        action: Action,
    ) -> Result<MemberChange<'a>, CoreError> {
        self.permit(actor, action, None)?;
        Ok(MemberChange {
            ws: self,
            actor,
            action,
        })
    }

    pub fn add_user(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<(), CoreError> {
        check_member_name("user", name)?;
        let permitted = self.permit_member(actor, Action::UserAdd)?;
        let hash = hash_password(password)?;
        permitted.apply(
            &format!("{name} as {role}"),
            |store| store.add_user(name, role.as_str(), &hash),
            || {
                format!(
                    "user `{name}` exists: `zns-batch users passwd {name}` sets a new password, \
                     `users remove {name}` removes it"
                )
            },
        )
    }

    pub fn users(&self) -> Result<Vec<UserLine>, CoreError> {
        self.list_existing(|store| Ok(store.users()?.into_iter().map(UserLine::from).collect()))
    }

    /// Removing a user ends their sessions (each request checks the user).
    pub fn remove_user(&self, actor: &Actor, name: &str) -> Result<(), CoreError> {
        self.permit_member(actor, Action::UserRemove)?.apply(
            name,
            |store| store.remove_user(name),
            || no_user(name),
        )
    }

    /// A new password ends the user's sessions (a new generation).
    pub fn set_password(&self, actor: &Actor, name: &str, password: &str) -> Result<(), CoreError> {
        let permitted = self.permit_member(actor, Action::UserPasswd)?;
        let hash = hash_password(password)?;
        permitted.apply(
            name,
            |store| store.set_password(name, &hash),
            || no_user(name),
        )
    }

    /// A new role ends the user's sessions (they sign in again as it).
    pub fn set_role(&self, actor: &Actor, name: &str, role: Role) -> Result<(), CoreError> {
        self.permit_member(actor, Action::UserRole)?.apply(
            &format!("{name} as {role}"),
            |store| store.set_role(name, role.as_str()),
            || no_user(name),
        )
    }

    /// A new API token: its value, to be shown once.
    pub fn add_token(&self, actor: &Actor, name: &str, role: Role) -> Result<String, CoreError> {
        check_member_name("token", name)?;
        let permitted = self.permit_member(actor, Action::TokenAdd)?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        permitted.apply(
            &format!("{name} as {role}"),
            |store| store.add_token(name, role.as_str(), &token_digest(&token)),
            || {
                format!(
                    "a token named `{name}` exists (revoked ones keep their name): \
                     choose another name"
                )
            },
        )?;
        Ok(token)
    }

    pub fn tokens(&self) -> Result<Vec<TokenLine>, CoreError> {
        self.list_existing(|store| Ok(store.tokens()?.into_iter().map(TokenLine::from).collect()))
    }

    pub fn revoke_token(&self, actor: &Actor, name: &str) -> Result<(), CoreError> {
        self.permit_member(actor, Action::TokenRevoke)?.apply(
            name,
            |store| store.revoke_token(name),
            || format!("no live token `{name}` (see `zns-batch tokens list`)"),
        )
    }

    /// A sign-in: the user and the generation of their password when the
    /// password is right. Slow on purpose (argon2): call it off the
    /// async threads. An unknown name costs a hash too, so the timing does
    /// not tell which names exist.
    pub fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<(Actor, i64)>, CoreError> {
        let user = match self.existing_store()? {
            Some(store) => store.find_user(name)?,
            None => None,
        };
        let Some(user) = user else {
            let _ = hash_password("a password nobody has");
            return Ok(None);
        };
        let Ok(parsed) = PasswordHash::new(&user.password_hash) else {
            return Ok(None);
        };
        if Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_err()
        {
            return Ok(None);
        }
        let role: Role = user.role.parse()?;
        Ok(Some((Actor::user(&user.name, role), user.generation)))
    }
}

/// A user or token change the actor's role allows (see
/// [`Workspace::permit_member`]).
struct MemberChange<'a> {
    ws: &'a Workspace,
    actor: &'a Actor,
    action: Action,
}

impl MemberChange<'_> {
    /// The store's change, then its audit entry. `change` answers false when
    /// the name is not there (or already is): a usage error saying
    /// `refusal`, and nothing recorded.
    fn apply(
        self,
        detail: &str,
        change: impl FnOnce(&mut Store) -> Result<bool, StoreError>,
        refusal: impl FnOnce() -> String,
    ) -> Result<(), CoreError> {
        let mut store = self.ws.open_store()?;
        if !change(&mut store)? {
            return Err(usage(refusal()));
        }
        write_audit(
            &mut store,
            self.actor,
            self.action.as_str(),
            None,
            detail,
            "allowed",
        )
    }
}

fn no_user(name: &str) -> String {
    format!("no user `{name}` (see `zns-batch users list`)")
}

fn audit_page(
    store: &Store,
    campaign: Option<&str>,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<AuditEntry>, CoreError> {
    Ok(store
        .audit_page(campaign, before, limit.clamp(1, AUDIT_MAX_LIMIT))?
        .into_iter()
        .map(AuditEntry::from)
        .collect())
}

/// `serve`'s per-request questions, on its reading connection.
impl Reader {
    /// Whether sign-in is needed even on loopback: a user or a live token exists.
    pub fn has_team(&self) -> Result<bool, CoreError> {
        Ok(self.store.has_team()?)
    }

    /// A bearer token's owner.
    pub fn check_token(&self, token: &str) -> Result<TokenCheck, CoreError> {
        Ok(match self.store.token_by_hash(&token_digest(token))? {
            None => TokenCheck::Unknown,
            Some(t) if t.revoked_ms.is_some() => TokenCheck::Revoked(t.name),
            Some(t) => TokenCheck::Valid(Actor::token(&t.name, t.role.parse()?)),
        })
    }

    /// A signed-in user, as now: gone, or with a newer password than the
    /// session's, is `None` (the session ends); the role is today's.
    pub fn session_user(&self, name: &str, generation: i64) -> Result<Option<Actor>, CoreError> {
        match self.store.find_user(name)? {
            Some(u) if u.generation == generation => {
                Ok(Some(Actor::user(&u.name, u.role.parse()?)))
            }
            _ => Ok(None),
        }
    }

    pub fn audit(
        &self,
        campaign: Option<&str>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, CoreError> {
        audit_page(&self.store, campaign, before, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin >= Action::TokenAdd.needs());
        assert!(Role::Operator >= Action::Start.needs());
        assert!(Role::Operator < Action::UserAdd.needs());
        assert!(Role::Viewer < Action::Pause.needs());
        assert_eq!("Operator".parse::<Role>().unwrap(), Role::Operator);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn passwords_verify_and_tokens_hash() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(Some(dir.path().join("s.sqlite")), Default::default(), None);
        let admin = Actor::os_user();
        ws.add_user(&admin, "anh", Role::Viewer, "correct horse")
            .unwrap();
        assert!(ws
            .add_user(&admin, "anh", Role::Viewer, "correct horse")
            .is_err());
        assert!(ws.add_user(&admin, "bao", Role::Viewer, "short").is_err());
        let (who, generation) = ws.verify_password("anh", "correct horse").unwrap().unwrap();
        assert_eq!(who.label(), "user:anh");
        assert!(ws.verify_password("anh", "wrong horse").unwrap().is_none());
        assert!(ws
            .verify_password("nobody", "correct horse")
            .unwrap()
            .is_none());
        let viewer = Actor::user("anh", Role::Viewer);
        assert!(matches!(
            ws.add_token(&viewer, "x", Role::Admin),
            Err(CoreError::Forbidden(_))
        ));
        let token = ws.add_token(&admin, "nightly", Role::Operator).unwrap();
        let r = ws.reader().unwrap();
        assert_eq!(
            r.check_token(&token).unwrap(),
            TokenCheck::Valid(Actor::token("nightly", Role::Operator))
        );
        assert_eq!(r.check_token("zns_nope").unwrap(), TokenCheck::Unknown);
        assert!(r.session_user("anh", generation).unwrap().is_some());
        ws.set_password(&admin, "anh", "another horse").unwrap();
        assert!(r.session_user("anh", generation).unwrap().is_none());
        ws.set_role(&admin, "anh", Role::Operator).unwrap();
        assert!(r.session_user("anh", generation + 1).unwrap().is_none());
        let (who, _) = ws.verify_password("anh", "another horse").unwrap().unwrap();
        assert_eq!(who.role, Role::Operator);
        let log = ws.audit_list(None, None, 10).unwrap();
        // Newest first: role, passwd, the token, the viewer's refused token.
        assert_eq!(log[0].action, "user-role");
        assert_eq!(log[1].action, "user-passwd");
        assert_eq!(
            (log[3].actor.as_str(), log[3].outcome.as_str()),
            ("user:anh", "refused")
        );
    }
}
