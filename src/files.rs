//! What tms keeps on disk is for its owner only: the SQLite database with its `-wal` and `-shm`,
//! the mail outbox (its `.eml` files hold verification links), the jsonl event log (events carry
//! webhook secrets), the development JWT secret and the data directory that holds them. Files
//! are made 0600 and directories 0700 whatever the umask: new ones are created so, and ones left
//! looser (by an earlier version, a copy, another tool) are tightened at start-up
//! ([`secure_data`]).
//!
//! Only the data directory and the outbox are tightened as directories: a directory that merely
//! holds a configured path (`DATABASE_URL=sqlite:///srv/x.db`, `EVENT_SINK=jsonl:/var/log/…`)
//! belongs to someone else, and is made owner-only only when tms creates it. A shared directory
//! (sticky bit, like `/tmp`) is never changed. Unix only; elsewhere the platform's defaults
//! apply.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Config, DatabaseConfig, EventSink};

/// The mode of every file tms writes.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory tms creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each owner-only (0700). Existing ones are left as they
/// are.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)
}

/// [`create_dir`] for async code.
pub async fn create_dir_async(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(dir).await
}

/// Options that create a file owner-only (0600); an existing file keeps its mode.
pub fn open_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// [`open_options`] for async code.
pub fn open_options_async() -> tokio::fs::OpenOptions {
    let mut options = tokio::fs::OpenOptions::new();
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options
}

/// Creates the empty file `path` owner-only when it is missing, and tightens it when it exists.
pub fn create_file(path: &Path) -> io::Result<()> {
    match open_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => tighten(path),
        Err(err) => Err(err),
    }
}

/// Takes every permission of group and others off `path` (a file becomes 0600, a directory
/// 0700, for the usual 0644 and 0755). A missing path, and a shared directory (sticky bit), are
/// left alone.
pub fn tighten(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        let mode = metadata.permissions().mode() & 0o7777;
        let shared = metadata.is_dir() && mode & 0o1000 != 0;
        if mode & 0o077 == 0 || shared {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// [`tighten`], logging instead of failing: a file tms cannot change (owned by another user)
/// must not keep it from starting.
pub fn tighten_or_warn(path: &Path) {
    if let Err(err) = tighten(path) {
        tracing::warn!(path = %path.display(), error = %err,
            "cannot make this file owner-only (0600, directories 0700)");
    }
}

/// The outbox of `.eml` files in `data_dir` (used when no SMTP server is configured).
pub fn outbox_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox")
}

/// The development JWT secret in `data_dir` (used when `JWT_SECRET` is not set).
pub fn jwt_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("jwt-secret")
}

/// The files SQLite keeps beside database `path` in WAL mode.
pub fn sqlite_companions(path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Tightens what `config` keeps on disk, where it exists: the data directory, the development
/// JWT secret, the outbox and its messages, the jsonl event log and the SQLite database with its
/// `-wal` and `-shm`. Run at start-up, before any of them is opened.
pub fn secure_data(config: &Config) {
    let data_dir = &config.data_dir;
    tighten_or_warn(data_dir);
    tighten_or_warn(&jwt_secret_path(data_dir));
    let outbox = outbox_dir(data_dir);
    tighten_or_warn(&outbox);
    if let Ok(entries) = std::fs::read_dir(&outbox) {
        for entry in entries.flatten() {
            tighten_or_warn(&entry.path());
        }
    }
    tighten_or_warn(&data_dir.join("events.jsonl"));
    if let EventSink::Jsonl(path) = &config.event_sink {
        tighten_or_warn(path);
    }
    if let DatabaseConfig::Sqlite { path } = &config.database {
        tighten_or_warn(path);
        for companion in sqlite_companions(path) {
            tighten_or_warn(&companion);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn tightening_takes_group_and_others_off_and_leaves_shared_directories() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for (given, tightened) in [
            (0o644, 0o600),
            (0o666, 0o600),
            (0o400, 0o400),
            (0o755, 0o700),
        ] {
            set_mode(&file, given);
            tighten(&file).unwrap();
            assert_eq!(mode(&file), tightened, "{given:o}");
        }
        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).unwrap();
        set_mode(&sub, 0o755);
        tighten(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        set_mode(&sub, 0o1777);
        tighten(&sub).unwrap();
        assert_eq!(mode(&sub), 0o1777, "a shared directory stays as it is");
        tighten(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn created_files_and_directories_are_owner_only_and_existing_ones_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("db");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        set_mode(&file, 0o644);
        create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            sqlite_companions(&file),
            [nested.join("db-wal"), nested.join("db-shm")]
        );
    }
}
