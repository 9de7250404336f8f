//! The data folder and the SQLite database hold password and key hashes and sealed provider
//! tokens: they are created readable by their owner only (0700 and 0600), whatever the umask,
//! and an existing one that others can read is reported at start.
//!
//! SQLite creates its `-wal` and `-shm` files with the database file's permissions, so creating
//! the database 0600 before SQLite opens it covers those too.

use std::path::Path;

/// Makes sure `dir` exists and `database` (in it) exists, both private to the owner.
pub(super) fn prepare(dir: &Path, database: &Path) -> std::io::Result<()> {
    imp::prepare(dir, database)
}

#[cfg(unix)]
mod imp {
    use std::fs::{self, DirBuilder, OpenOptions, Permissions};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    const DIR_MODE: u32 = 0o700;
    const FILE_MODE: u32 = 0o600;

    pub(super) fn prepare(dir: &Path, database: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            warn_if_shared(dir, "data_dir", "chmod 700")?;
        } else {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            // The umask may have taken bits away, never added them; set exactly.
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
        }
        if database.exists() {
            warn_if_shared(database, "the database", "chmod 600")?;
        } else {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(database)?;
            fs::set_permissions(database, Permissions::from_mode(FILE_MODE))?;
        }
        Ok(())
    }

    fn warn_if_shared(path: &Path, what: &str, fix: &str) -> std::io::Result<()> {
        let mode = fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "{what} is readable by other users of this machine (it holds password hashes \
                 and sealed tokens); run `{fix} {}`",
                path.display()
            );
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_new_folder_and_database_are_private_whatever_the_umask() {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("a/b/data");
            let database = dir.join("portcullis.db");
            prepare(&dir, &database).unwrap();
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&database), 0o600);
            // Existing ones are left as they are (and reported).
            fs::set_permissions(&database, Permissions::from_mode(0o644)).unwrap();
            prepare(&dir, &database).unwrap();
            assert_eq!(mode(&database), 0o644);
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::Path;

    pub(super) fn prepare(dir: &Path, _database: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)
    }
}
