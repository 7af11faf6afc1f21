//! A marked block of alias entries in a hosts file, for clients that don't use our DNS responder.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};

use super::DnsError;

const BEGIN: &str = "# BEGIN weft managed block — do not edit";
const END: &str = "# END weft managed block";

/// Cheap to clone (clones share the lock), so callers can move one into `spawn_blocking`.
#[derive(Clone)]
pub struct HostsBlock {
    path: PathBuf,
    /// Serialises read-modify-write cycles from concurrent callers.
    lock: Arc<Mutex<()>>,
}

impl HostsBlock {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Rewrites the managed block (between `# BEGIN weft managed block — do not edit` and `# END weft managed block`)
    /// with one `IP\tNAME` line per entry (sorted), preserving everything else in the file. Atomic: write a temp file in the same dir,
    /// fsync, rename over. If rename fails with EBUSY/EXDEV (the file is a bind mount, as in containers or `ip netns exec`), fall back
    /// to rewriting the file in place. Skips the write when the content would be unchanged.
    /// Blocking file I/O: from async code call it via `spawn_blocking`.
    pub fn write(&self, entries: &[(String, Ipv4Addr)]) -> Result<(), DnsError> {
        let mut sorted: Vec<&(String, Ipv4Addr)> = entries
            .iter()
            .filter(|(name, _)| {
                // A name with whitespace or '#' would corrupt the file for every other reader.
                let ok = !name.is_empty()
                    && !name
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '#');
                if !ok {
                    warn!(name, "not writing invalid name to hosts file");
                }
                ok
            })
            .collect();
        sorted.sort();
        sorted.dedup();
        let mut block = format!("{BEGIN}\n");
        for (name, ip) in sorted {
            block.push_str(&format!("{ip}\t{name}\n"));
        }
        block.push_str(END);
        block.push('\n');
        self.update(Some(&block))
    }

    /// Removes the managed block (same atomic write), leaving the rest of the file as it was.
    pub fn remove(&self) -> Result<(), DnsError> {
        self.update(None)
    }

    fn update(&self, block: Option<&str>) -> Result<(), DnsError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Write through a symlinked /etc/hosts rather than replacing the link with a file.
        let path = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let old = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound && block.is_some() => String::new(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(DnsError::HostsRead { path, source }),
        };
        let new = splice(&old, block);
        if new == old {
            return Ok(());
        }
        replace(&path, new.as_bytes()).map_err(|source| DnsError::HostsWrite {
            path: path.clone(),
            source,
        })?;
        debug!(path = %path.display(), "hosts file updated");
        Ok(())
    }
}

/// `old` with every managed block removed and `block` put where the first one was (else appended).
fn splice(old: &str, block: Option<&str>) -> String {
    let lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::with_capacity(old.len() + block.map_or(0, str::len));
    let mut placed = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line == BEGIN {
            match lines[i..].iter().position(|l| l.trim() == END) {
                Some(off) => i += off + 1,
                // No END (torn write or hand edit): only swallow lines that look like ours, so a
                // user's own entries below are never lost.
                None => {
                    while i < lines.len() && is_entry_line(lines[i]) {
                        i += 1;
                    }
                }
            }
            if let Some(b) = block.filter(|_| !placed) {
                out.push_str(b);
            }
            placed = true;
        } else if line != END {
            out.push_str(lines[i - 1]);
        }
    }
    if let Some(b) = block.filter(|_| !placed) {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(b);
    }
    out
}

fn is_entry_line(line: &str) -> bool {
    matches!(line.trim_end().split_once('\t'), Some((ip, name))
        if ip.parse::<Ipv4Addr>().is_ok() && !name.is_empty() && !name.contains(char::is_whitespace))
}

fn replace(path: &Path, data: &[u8]) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from(ErrorKind::InvalidInput))?;
    let tmp = dir.join(format!(
        ".{}.weft-{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let meta = fs::metadata(path).ok();
    // Resolvers run unprivileged: never let a strict umask make the hosts file unreadable.
    let perms = meta
        .as_ref()
        .map_or(Permissions::from_mode(0o644), |m| m.permissions());
    let staged = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(perms)?;
        if let Some(m) = &meta {
            // Best effort: only root can give the file back to its owner.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.sync_all()
    })();
    let renamed = staged.and_then(|()| fs::rename(&tmp, path));
    match renamed {
        Ok(()) => {
            // Persist the rename itself; failure here only weakens durability, not correctness.
            let _ = File::open(dir).and_then(|d| d.sync_all());
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            // EBUSY/EXDEV: the file is a bind mount. EACCES/EROFS: the directory isn't writable,
            // which also happens with a bind-mounted file in a read-only /etc.
            let bind_mounted = matches!(
                e.kind(),
                ErrorKind::ResourceBusy
                    | ErrorKind::CrossesDevices
                    | ErrorKind::PermissionDenied
                    | ErrorKind::ReadOnlyFilesystem
            );
            if !bind_mounted {
                return Err(e);
            }
            debug!(path = %path.display(), error = %e, "atomic replace impossible; rewriting in place");
            write_in_place(path, data)
        }
    }
}

fn write_in_place(path: &Path, data: &[u8]) -> io::Result<()> {
    // Overwrite then trim (no O_TRUNC) so concurrent readers never see an empty file.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the scratch directory when the test ends.
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> (Scratch, PathBuf) {
        let dir = std::env::temp_dir().join(format!("weft-hosts-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        (Scratch(dir), path)
    }

    fn e(name: &str, ip: [u8; 4]) -> (String, Ipv4Addr) {
        (name.to_string(), Ipv4Addr::from(ip))
    }

    const ORIGINAL: &str = "127.0.0.1\tlocalhost\n# keep me\n::1 localhost ip6-localhost\n";

    #[test]
    fn write_rewrite_remove_preserves_other_lines() {
        let (_scratch, path) = scratch("cycle");
        fs::write(&path, ORIGINAL).unwrap();
        let hosts = HostsBlock::new(path.clone());

        hosts
            .write(&[e("b.svc", [127, 255, 0, 2]), e("a.svc", [127, 255, 0, 1])])
            .unwrap();
        let want = format!("{ORIGINAL}{BEGIN}\n127.255.0.1\ta.svc\n127.255.0.2\tb.svc\n{END}\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), want);

        // A user line added after our block must survive a rewrite; the block stays in place.
        fs::write(&path, format!("{want}10.1.1.1\tuser\n")).unwrap();
        hosts.write(&[e("c.svc", [127, 255, 0, 3])]).unwrap();
        let want = format!("{ORIGINAL}{BEGIN}\n127.255.0.3\tc.svc\n{END}\n10.1.1.1\tuser\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), want);

        // Unchanged content: no write, so the inode (replaced on every real write) stays the same.
        let ino = fs::metadata(&path).unwrap().ino();
        hosts.write(&[e("c.svc", [127, 255, 0, 3])]).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);

        hosts.remove().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{ORIGINAL}10.1.1.1\tuser\n")
        );
        hosts.remove().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{ORIGINAL}10.1.1.1\tuser\n")
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn missing_newline_missing_file_and_torn_block() {
        let (_scratch, path) = scratch("edge");
        let hosts = HostsBlock::new(path.clone());
        hosts.remove().unwrap();
        assert!(!path.exists());
        hosts.write(&[e("x", [10, 0, 0, 1])]).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{BEGIN}\n10.0.0.1\tx\n{END}\n")
        );

        fs::write(&path, "1.2.3.4 h").unwrap();
        hosts.write(&[]).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("1.2.3.4 h\n{BEGIN}\n{END}\n")
        );

        // BEGIN without END: our entry lines go, the user's (space-separated) line stays.
        fs::write(&path, format!("{BEGIN}\n10.0.0.1\tx\n10.0.0.9 mine\n")).unwrap();
        hosts.remove().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "10.0.0.9 mine\n");
    }

    #[test]
    fn rejects_names_that_would_corrupt_the_file() {
        let (_scratch, path) = scratch("bad");
        let hosts = HostsBlock::new(path.clone());
        hosts
            .write(&[
                e("ok", [10, 0, 0, 1]),
                e("a b", [10, 0, 0, 2]),
                e("x\n1.1.1.1 evil", [10, 0, 0, 3]),
            ])
            .unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{BEGIN}\n10.0.0.1\tok\n{END}\n")
        );
    }

    #[test]
    fn in_place_fallback_keeps_inode() {
        let (_scratch, path) = scratch("inplace");
        fs::write(&path, "longer original content line\n").unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        write_in_place(&path, b"short\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "short\n");
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
    }
}
