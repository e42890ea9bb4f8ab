//! Team access: named users (argon2id PHC strings, never a password) and
//! named API tokens (SHA-256 of the token: tokens are 32 random bytes, so
//! a fast hash is enough and a lookup is one indexed read). Hashing
//! itself happens in the core; this file only keeps what it is given.

use super::db::{params, DbError, OptionalExtension, Params, Row};
use super::rows::from_row;

use super::{Result, Store};

/// Appended to the schema's migrations (see schema.rs).
pub(super) const USERS_MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        -- Bumped by a new password: sessions opened before it end.
        generation INTEGER NOT NULL DEFAULT 1,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS api_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        campaign TEXT,
        detail TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_campaign ON audit(campaign, id);
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub generation: i64,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

fn now_ms() -> i64 {
    crate::model::clock::now_ms()
}

fn user_row(r: &Row<'_>) -> Result<UserRecord, DbError> {
    Ok(from_row!(r => UserRecord { name, role, password_hash, generation, created_ms }))
}

fn token_row(r: &Row<'_>) -> Result<TokenRecord, DbError> {
    Ok(from_row!(r => TokenRecord { name, role, created_ms, revoked_ms }))
}

impl Store {
    /// Run a statement that changes one row at most: whether it did.
    fn changed_one<P: Params>(&self, sql: &str, params: P) -> Result<bool> {
        let n = self.db.execute(sql, params).map_err(|e| self.e(e))?;
        Ok(n == 1)
    }

    /// A new user; false when the name is taken.
    pub fn add_user(&mut self, name: &str, role: &str, password_hash: &str) -> Result<bool> {
        self.changed_one(
            "INSERT INTO users (name, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO NOTHING",
            params![name, role, password_hash, now_ms()],
        )
    }

    pub fn find_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.db
            .query_row(
                "SELECT name, role, password_hash, generation, created_ms FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.db
            .query_map(
                "SELECT name, role, password_hash, generation, created_ms FROM users ORDER BY name",
                (),
                user_row,
            )
            .map_err(|e| self.e(e))
    }

    /// False when there is no such user.
    pub fn remove_user(&mut self, name: &str) -> Result<bool> {
        self.changed_one("DELETE FROM users WHERE name = ?1", [name])
    }

    /// A new password (and a new generation); false when there is no such user.
    pub fn set_password(&mut self, name: &str, password_hash: &str) -> Result<bool> {
        self.changed_one(
            "UPDATE users SET password_hash = ?2, generation = generation + 1 WHERE name = ?1",
            params![name, password_hash],
        )
    }

    /// A new role (and a new generation: the user signs in again);
    /// false when there is no such user.
    pub fn set_role(&mut self, name: &str, role: &str) -> Result<bool> {
        self.changed_one(
            "UPDATE users SET role = ?2, generation = generation + 1 WHERE name = ?1",
            params![name, role],
        )
    }

    /// Whether anyone must sign in: a user or a live API token exists.
    pub fn has_team(&self) -> Result<bool> {
        self.db
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM users) \
                     OR EXISTS (SELECT 1 FROM api_tokens WHERE revoked_ms IS NULL)",
                (),
                |r| r.get(0),
            )
            .map_err(|e| self.e(e))
    }

    /// A new token by the hash of its value; false when the name is taken.
    pub fn add_token(&mut self, name: &str, role: &str, token_sha256: &str) -> Result<bool> {
        self.changed_one("INSERT INTO api_tokens (name, role, token_sha256, created_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO NOTHING",
                params![name, role, token_sha256, now_ms()],)
    }

    /// The token with this hash, revoked or not.
    pub fn token_by_hash(&self, token_sha256: &str) -> Result<Option<TokenRecord>> {
        self.db
            .query_row(
                "SELECT name, role, created_ms, revoked_ms FROM api_tokens WHERE token_sha256 = ?1",
                [token_sha256],
                token_row,
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.db
            .query_map(
                "SELECT name, role, created_ms, revoked_ms FROM api_tokens ORDER BY name",
                (),
                token_row,
            )
            .map_err(|e| self.e(e))
    }

    /// False when there is no live token of that name.
    pub fn revoke_token(&mut self, name: &str) -> Result<bool> {
        self.changed_one(
            "UPDATE api_tokens SET revoked_ms = ?2 WHERE name = ?1 AND revoked_ms IS NULL",
            params![name, now_ms()],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::on_both;

    #[test]
    fn users_and_tokens_round_trip() {
        on_both("users_and_tokens_round_trip", |s, _| {
            assert!(!s.has_team().unwrap());
            assert!(s.add_user("anh", "operator", "$argon2id$x").unwrap());
            assert!(
                !s.add_user("anh", "admin", "$argon2id$y").unwrap(),
                "name taken"
            );
            assert!(s.add_user("binh", "viewer", "$argon2id$b").unwrap());
            assert!(s.has_team().unwrap());
            assert!(s.set_password("anh", "$argon2id$z").unwrap());
            assert!(!s.set_password("nobody", "$argon2id$z").unwrap());
            let u = s.find_user("anh").unwrap().unwrap();
            assert_eq!(
                (u.role.as_str(), u.password_hash.as_str(), u.generation),
                ("operator", "$argon2id$z", 2)
            );
            assert!(s.set_role("anh", "admin").unwrap());
            assert_eq!(s.find_user("anh").unwrap().unwrap().generation, 3);
            assert_eq!(
                s.users()
                    .unwrap()
                    .iter()
                    .map(|u| (u.name.as_str(), u.role.as_str()))
                    .collect::<Vec<_>>(),
                [("anh", "admin"), ("binh", "viewer")]
            );
            assert!(s.remove_user("anh").unwrap());
            assert!(!s.remove_user("anh").unwrap());
            assert!(s.remove_user("binh").unwrap());
            assert_eq!(s.find_user("anh").unwrap(), None);
            assert!(!s.has_team().unwrap());

            assert!(s.add_token("nightly", "operator", "ab12").unwrap());
            assert!(
                !s.add_token("nightly", "admin", "cd34").unwrap(),
                "name taken"
            );
            assert!(s.has_team().unwrap());
            assert_eq!(s.token_by_hash("ab12").unwrap().unwrap().name, "nightly");
            assert_eq!(s.token_by_hash("cd34").unwrap(), None);
            assert!(s.revoke_token("nightly").unwrap());
            assert!(!s.revoke_token("nightly").unwrap(), "already revoked");
            assert!(s
                .token_by_hash("ab12")
                .unwrap()
                .unwrap()
                .revoked_ms
                .is_some());
            assert_eq!(s.tokens().unwrap().len(), 1);
            assert!(
                !s.has_team().unwrap(),
                "a revoked token asks for no sign-in"
            );
        });
    }
}
