//! The few places where SQLite's and PostgreSQL's SQL differ, in one spot. Queries are written once
//! with `?` (or `?N`) placeholders and portable SQL; the dialect rewrites placeholders for
//! PostgreSQL and supplies the fragments that have no common spelling.

use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The columns of a user row that `rows::user_from_row` reads (with `groups`, made per dialect).
const USER_COLUMNS: [&str; 10] = [
    "id",
    "username",
    "email",
    "display_name",
    "role",
    "status",
    "created_at",
    "last_seen_at",
    "password_hash",
    "must_change_password",
];

/// The users columns PostgreSQL keeps as citext (migrations/postgres/0001_init.sql), so that
/// names compare without case as SQLite's NOCASE columns do.
const CITEXT_USER_COLUMNS: [&str; 3] = ["username", "email", "display_name"];

impl Dialect {
    /// The statement in this dialect: PostgreSQL numbers its placeholders (`$1`), SQLite takes
    /// `?` and `?N` as written. The queries contain no `?` inside string literals.
    pub fn sql<'a>(self, text: &'a str) -> Cow<'a, str> {
        if self == Dialect::Sqlite || !text.contains('?') {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut next = 0;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '?' {
                out.push(c);
                continue;
            }
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            if digits.is_empty() {
                next += 1;
                digits = next.to_string();
            }
            out.push('$');
            out.push_str(&digits);
        }
        Cow::Owned(out)
    }

    /// A user row's columns, with their groups as one newline-separated text.
    pub fn user_columns(self) -> String {
        let own = USER_COLUMNS
            .iter()
            .map(|column| self.read_column("users", column))
            .collect::<Vec<_>>()
            .join(", ");
        let groups = match self {
            Dialect::Sqlite => {
                "(SELECT group_concat(name, char(10)) FROM \
                   (SELECT DISTINCT group_name AS name FROM group_members gm WHERE gm.user_id = users.id))"
            }
            Dialect::Postgres => {
                "(SELECT string_agg(name, chr(10)) FROM \
                   (SELECT DISTINCT group_name AS name FROM group_members gm WHERE gm.user_id = users.id) AS g)"
            }
        };
        format!("{own}, {groups} AS groups")
    }

    /// `column` of `table` as a query selects it: PostgreSQL's case-insensitive (citext) columns
    /// are read back as text, since sqlx's Any driver knows no citext.
    pub fn read_column(self, table: &str, column: &str) -> String {
        let citext = table == "users" && CITEXT_USER_COLUMNS.contains(&column);
        match (self, citext) {
            (Dialect::Postgres, true) => format!("{column}::text AS {column}"),
            _ => column.to_owned(),
        }
    }

    /// A text parameter compared without regard to case: SQLite's columns are NOCASE already;
    /// PostgreSQL's are citext, which compares case-insensitively only with another citext.
    pub fn nocase_param(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => param.to_owned(),
            Dialect::Postgres => format!("CAST({param} AS citext)"),
        }
    }

    /// The larger of two values (SQLite's scalar `max`, PostgreSQL's `greatest`).
    pub fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "max",
            Dialect::Postgres => "greatest",
        }
    }

    /// A subquery of the strings in a JSON array bound at `param` (`?` or `?N`).
    pub fn json_strings(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
            Dialect::Postgres => {
                format!("SELECT jsonb_array_elements_text(CAST({param} AS jsonb))")
            }
        }
    }

    /// Run on every new connection.
    pub fn session_setup(self) -> &'static [&'static str] {
        match self {
            // WAL lets readers run beside the writer; foreign keys are off unless asked for.
            Dialect::Sqlite => &[
                "PRAGMA journal_mode = WAL",
                "PRAGMA synchronous = NORMAL",
                "PRAGMA busy_timeout = 5000",
                "PRAGMA foreign_keys = ON",
            ],
            Dialect::Postgres => &[],
        }
    }

    /// A statement that makes writers of the change feed take turns until they commit.
    /// Readers follow the feed by sequence number; in PostgreSQL a transaction that drew number
    /// 10 can commit after one that drew 11, and a reader that already saw 11 would never see 10.
    /// Taken before the number is drawn, the lock makes numbers and commits agree. (The outbox
    /// triggers take the same kind of lock in SQL.) SQLite has one writer at a time anyway.
    pub fn change_feed_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(7243062)"),
        }
    }

    /// Appended to a `SELECT` that claims rows, so that concurrent workers skip rows another one
    /// holds. SQLite serialises writers, so it needs nothing.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            Dialect::Postgres.sql("SELECT ? WHERE a = ? AND b = ?"),
            "SELECT $1 WHERE a = $2 AND b = $3"
        );
        assert_eq!(
            Dialect::Postgres.sql("WHERE ?1 IS NULL OR x LIKE ?1 LIMIT ?2"),
            "WHERE $1 IS NULL OR x LIKE $1 LIMIT $2"
        );
        assert_eq!(Dialect::Sqlite.sql("a = ?"), "a = ?");
    }
}
