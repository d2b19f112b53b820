//! API tokens: created with an optional expiry, listed, revoked. Only a token's SHA-256 is
//! stored, so neither the database nor `tufa token list` can show a token again. Every request
//! looks its token up afresh (nothing is cached), so a revocation holds from the next request.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};
use sqlx::Row;

use super::{Database, Identity, check_user_name, now_micros};
use crate::error::{Error, Result};
use crate::name::ProjectName;

/// `last_used` is written at most this often (microseconds), so that authenticating an upload
/// stays a read in all but one request a minute.
const LAST_USED_PRECISION: i64 = 60 * 1_000_000;

/// A token's number, as `tufa token list` shows it and `tufa token revoke` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenId(i64);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TokenId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<i64>() {
            Ok(id) if id > 0 => Ok(TokenId(id)),
            _ => Err(format!(
                "{s:?} is not a token ID: use the number `tufa token list` shows"
            )),
        }
    }
}

/// What `tufa token list` shows of a token: never the token itself.
#[derive(Clone, Debug)]
pub struct TokenInfo {
    pub id: TokenId,
    pub user: String,
    /// The one project the token may upload to, if limited.
    pub project: Option<String>,
    pub created_micros: i64,
    pub expires_micros: Option<i64>,
    pub revoked_micros: Option<i64>,
    /// To the minute (see `LAST_USED_PRECISION`).
    pub last_used_micros: Option<i64>,
}

/// What a presented token turned out to be.
#[derive(Clone, Debug)]
pub enum Authenticated {
    Valid(Identity),
    Expired {
        id: TokenId,
        expired_micros: i64,
    },
    Revoked {
        id: TokenId,
        revoked_micros: i64,
    },
    /// No such token: mistyped, from another index, or guessed.
    Unknown,
}

/// The outcome of revoking a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    AlreadyRevoked { revoked_micros: i64 },
    NoSuchToken,
}

fn token_digest(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

impl Database {
    /// Creates a token for `user` (creating the user if needed), valid until `expires_micros`
    /// if given, and returns it; only its hash is stored, so it cannot be shown again.
    pub async fn create_token(
        &self,
        user: &str,
        project: Option<&ProjectName>,
        expires_micros: Option<i64>,
    ) -> Result<String> {
        check_user_name(user)?;
        let now = now_micros();
        if expires_micros.is_some_and(|expires| expires <= now) {
            return Err(Error::Config(
                "the token's expiry is in the past: give a later date or a duration".into(),
            ));
        }
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| Error::Config("the system random number generator failed".into()))?;
        use base64::Engine;
        let token = format!(
            "tufa-{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO users (name, created) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tokens (user_id, sha256, project, created, expires)
             SELECT id, $1, $2, $3, $4 FROM users WHERE name = $5",
        )
        .bind(token_digest(&token))
        .bind(project.map(ProjectName::as_str))
        .bind(now)
        .bind(expires_micros)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Looks `token` up: whose it is, or why it no longer counts.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated> {
        let row = sqlx::query(
            "SELECT tokens.id, users.id, users.name, tokens.project, tokens.expires,
                    tokens.revoked, tokens.last_used
             FROM tokens JOIN users ON users.id = tokens.user_id WHERE tokens.sha256 = $1",
        )
        .bind(token_digest(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Authenticated::Unknown);
        };
        let id = TokenId(row.get(0));
        let now = now_micros();
        if let Some(revoked_micros) = row.get::<Option<i64>, _>(5) {
            return Ok(Authenticated::Revoked { id, revoked_micros });
        }
        if let Some(expired_micros) = row.get::<Option<i64>, _>(4).filter(|e| *e <= now) {
            return Ok(Authenticated::Expired { id, expired_micros });
        }
        let last_used: Option<i64> = row.get(6);
        if last_used.is_none_or(|used| now - used >= LAST_USED_PRECISION) {
            sqlx::query("UPDATE tokens SET last_used = $1 WHERE id = $2")
                .bind(now)
                .bind(id.0)
                .execute(&self.pool)
                .await?;
        }
        Ok(Authenticated::Valid(Identity {
            user_id: row.get(1),
            user: row.get(2),
            project: row
                .get::<Option<String>, _>(3)
                .and_then(|name| ProjectName::new(&name).ok()),
        }))
    }

    /// Every token, revoked and expired ones included, oldest first.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT tokens.id, users.name, tokens.project, tokens.created, tokens.expires,
                    tokens.revoked, tokens.last_used
             FROM tokens JOIN users ON users.id = tokens.user_id ORDER BY tokens.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| TokenInfo {
                id: TokenId(row.get(0)),
                user: row.get(1),
                project: row.get(2),
                created_micros: row.get(3),
                expires_micros: row.get(4),
                revoked_micros: row.get(5),
                last_used_micros: row.get(6),
            })
            .collect())
    }

    /// Revokes a token: from now on every request with it is refused.
    pub async fn revoke_token(&self, id: TokenId) -> Result<Revocation> {
        let mut tx = self.begin_write().await?;
        let revoked: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked FROM tokens WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match revoked {
            None => Revocation::NoSuchToken,
            Some(Some(revoked_micros)) => Revocation::AlreadyRevoked { revoked_micros },
            Some(None) => {
                sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2")
                    .bind(now_micros())
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                Revocation::Revoked
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory from before tokens could expire keeps its tokens working.
    #[tokio::test]
    async fn tokens_of_a_version_1_database_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tufa.db");
        let token = "tufa-made-by-an-older-tufa";
        {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::raw_sql(super::super::migrations::SCHEMA)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::raw_sql(&format!(
                "PRAGMA user_version = 1;
                 INSERT INTO users (id, name, created) VALUES (1, 'alice', 0);
                 INSERT INTO tokens (user_id, sha256, project, created)
                 VALUES (1, '{}', NULL, 0);",
                token_digest(token)
            ))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let database = Database::open(&path).await.unwrap();
        match database.authenticate(token).await.unwrap() {
            Authenticated::Valid(identity) => assert_eq!(identity.user, "alice"),
            other => panic!("the old token no longer works: {other:?}"),
        }
        let tokens = database.tokens().await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].expires_micros, None);
        assert!(tokens[0].last_used_micros.is_some());
        assert_eq!(
            database.revoke_token(tokens[0].id).await.unwrap(),
            Revocation::Revoked
        );
        assert!(matches!(
            database.authenticate(token).await.unwrap(),
            Authenticated::Revoked { .. }
        ));
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&database.pool)
            .await
            .unwrap();
        assert_eq!(version, super::super::SCHEMA_VERSION);
    }
}
