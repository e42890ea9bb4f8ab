//! The store's tests on both databases. `ZNS_TEST_PG` (a URL to a server
//! where the tests may create databases, e.g. from
//! `scripts/pg-throwaway.sh`) adds PostgreSQL: each test gets a fresh
//! database `zt_<random>`, dropped after. Unset, the PostgreSQL half of a
//! test prints that it was skipped (never passes silently in its name).

use std::path::PathBuf;

use super::Store;

/// A fresh PostgreSQL database for one test, dropped with this guard.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

/// The server to test on, if any.
pub fn pg_url() -> Option<String> {
    std::env::var("ZNS_TEST_PG").ok().filter(|u| !u.is_empty())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl PgDatabase {
    pub fn create(admin_url: &str) -> PgDatabase {
        let name = format!("zt_{:016x}", rand::random::<u64>());
        admin_statement(admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("ZNS_TEST_PG: cannot create a database: {e}"));
        PgDatabase {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = admin_statement(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// One statement on the server, on a thread of its own: the sync client
/// may not block a thread that drives async tasks (the tests' own runtime).
fn admin_statement(admin_url: &str, sql: &str) -> Result<(), postgres::Error> {
    std::thread::scope(|s| {
        s.spawn(|| postgres::Client::connect(admin_url, postgres::NoTls)?.batch_execute(sql))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Where a test's store lives; kept alive as long as the test runs.
pub enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

impl Place {
    pub fn open(&self) -> Store {
        match self {
            Place::Sqlite(dir) => Store::open(self.sqlite_path(dir)).unwrap(),
            Place::Postgres(db) => Store::open_postgres(&db.url).unwrap(),
        }
    }

    fn sqlite_path(&self, dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("s.sqlite")
    }

    pub fn name(&self) -> &'static str {
        match self {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres(_) => "postgres",
        }
    }
}

/// SQLite always, PostgreSQL when `ZNS_TEST_PG` is set (otherwise a line
/// says the PostgreSQL run of `test` was skipped).
pub fn test_places(test: &str) -> Vec<Place> {
    let mut places = vec![Place::Sqlite(tempfile::tempdir().unwrap())];
    match pg_url() {
        Some(url) => places.push(Place::Postgres(PgDatabase::create(&url))),
        None => {
            println!("SKIPPED on postgres: {test} (set ZNS_TEST_PG, see scripts/pg-throwaway.sh)")
        }
    }
    places
}

/// Run `body` once per database with a fresh, migrated store.
pub fn on_both(test: &str, mut body: impl FnMut(&mut Store, &Place)) {
    for place in test_places(test) {
        let mut store = place.open();
        eprintln!("{test}: on {}", place.name());
        body(&mut store, &place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_database_url_keeps_server_and_options() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "zt_1"),
            "postgres://u@h:5/zt_1"
        );
        assert_eq!(
            with_database("postgres://u@h:5?sslmode=disable", "zt_1"),
            "postgres://u@h:5/zt_1?sslmode=disable"
        );
    }

    #[test]
    fn store_schema_migrates_on_both_and_again_is_a_no_op() {
        on_both(
            "store_schema_migrates_on_both_and_again_is_a_no_op",
            |store, place| {
                assert_eq!(store.is_postgres(), matches!(place, Place::Postgres(_)));
                // A second open finds the schema current.
                let again = place.open();
                assert!(again.synchronous().unwrap() >= 1);
                let tables = store
                    .db
                    .query_map(
                        match store.db.dialect() {
                            super::super::db::Dialect::Sqlite => {
                                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                            }
                            super::super::db::Dialect::Postgres => {
                                "SELECT table_name::text FROM information_schema.tables \
                                 WHERE table_schema = 'public' AND table_name <> 'schema_version' \
                                 ORDER BY table_name"
                            }
                        },
                        (),
                        |r| r.get::<String>(0),
                    )
                    .unwrap();
                assert!(
                    tables.contains(&"campaign_counts".to_string()),
                    "{tables:?}"
                );
                assert_eq!(tables.len(), 18, "{tables:?}");
            },
        );
    }
}
