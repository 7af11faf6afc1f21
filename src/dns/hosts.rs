//! A marked block of alias entries in a hosts file, for clients that don't use our DNS responder.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Read};
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
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
    /// with one `IP\tNAME` line per entry (sorted), preserving everything else in the file. The file is changed in
    /// place (same inode; see `write_in_place`). Skips the write when the content would be unchanged.
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

    /// Removes the managed block (same in-place write), leaving the rest of the file as it was.
    pub fn remove(&self) -> Result<(), DnsError> {
        self.update(None)
    }

    fn update(&self, block: Option<&str>) -> Result<(), DnsError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = &self.path;
        let write_err = |source| DnsError::HostsWrite { path: path.clone(), source };
        // Opened through any symlink, so a symlinked /etc/hosts keeps being the link.
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound && block.is_none() => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => create(path).map_err(write_err)?,
            Err(source) => return Err(write_err(source)),
        };
        // Another weft (or anything else that locks it) editing the same file waits its turn, so
        // neither splices into content the other is rewriting. Resolvers do not lock; see
        // `write_in_place` for what they can see.
        file.lock().map_err(write_err)?;
        let mut old = String::new();
        (&file).read_to_string(&mut old).map_err(|source| DnsError::HostsRead { path: path.clone(), source })?;
        let new = splice(&old, block);
        if new == old {
            return Ok(());
        }
        write_in_place(&file, old.as_bytes(), new.as_bytes()).map_err(write_err)?;
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

/// A new hosts file: resolvers run unprivileged, so it is world-readable whatever the umask.
fn create(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(path)?;
    f.set_permissions(Permissions::from_mode(0o644))?;
    Ok(f)
}

/// Turns `old` into `new` in the same file. The inode must stay: the file is often bind-mounted
/// somewhere weft cannot see (`ip netns exec` mounts `/etc/netns/NAME/hosts` over `/etc/hosts` in
/// a mount namespace of its own; container runtimes mount a per-container file), and a process
/// holding such a mount keeps the inode it mounted, so a rename leaves it with the old file for good.
///
/// Resolvers do not lock (glibc reads the file afresh on each lookup), and Linux does not make a
/// read atomic against a write: a read overlapping a write can get any mix of old and new bytes,
/// and a read that sees the new bytes may still see the old length. Measured with a plain
/// "overwrite, then truncate" (a reader looping on `read`, 10,000 writes of a 40-line block): 30 to
/// 400 reads held a line spliced from two versions, some a real name with a wrong but valid
/// address (`27.255.1.13 service-13...`); with the steps below, none in 60,000 writes (the unit
/// test `writes_keep_the_inode_and_readers_never_see_a_spliced_line`). So the changed part, from the start of the first line that
/// differs to the end, goes through four writes, each of which changes the file only in ways that
/// are harmless in any mix with the state before it:
/// 1. the old lines with `#` as their first byte (every other byte unchanged: in any mix a line is
///    whole or a comment);
/// 2. `#` over the whole part, newline last, and as long as the longer version (so the file never
///    shrinks, nor grows with content a reader could cut);
/// 3. the new lines with `#` as their first byte, newlines as padding (every line start is `#` in
///    both this and step 2);
/// 4. the new lines (again only first bytes change); then the padding is truncated, and the file
///    synced.
///
/// A reader thus sees each line as it was, as it will be, commented out or blank, never spliced
/// (for a read that overlaps at most one of the writes, which take microseconds each).
/// The lines before the first change, usually all of the user's, are never written. A crash in
/// the microseconds between writes 1 and 4 leaves the lines from the first change on commented
/// out; weft writes its own block again at its next start.
fn write_in_place(file: &File, old: &[u8], new: &[u8]) -> io::Result<()> {
    let same = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let from = old[..same].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = old.len().max(new.len());
    let at = from as u64;
    let mut part = commented(&old[from..]);
    file.write_all_at(&part, at)?;
    part.clear();
    part.resize(end - from - 1, b'#');
    part.push(b'\n');
    file.write_all_at(&part, at)?;
    let mut part = commented(&new[from..]);
    part.resize(end - from, b'\n');
    file.write_all_at(&part, at)?;
    part[..new.len() - from].copy_from_slice(&new[from..]);
    file.write_all_at(&part, at)?;
    if new.len() < end {
        file.set_len(new.len() as u64)?;
    }
    file.sync_all()
}

/// `text` (which starts at a line start) with the first byte of every line replaced by `#`.
fn commented(text: &[u8]) -> Vec<u8> {
    let mut out = text.to_vec();
    let mut line_start = true;
    for (o, &b) in out.iter_mut().zip(text) {
        if line_start {
            *o = b'#';
        }
        line_start = b == b'\n';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

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

        // Unchanged content: no write at all.
        let mtime = fs::metadata(&path).unwrap().mtime_nsec();
        hosts.write(&[e("c.svc", [127, 255, 0, 3])]).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mtime_nsec(), mtime);

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

    /// Reads the file with one `read` call, as glibc does for a hosts file under 4 KiB.
    fn read_once(path: &Path) -> String {
        let mut buf = vec![0u8; 64 << 10];
        let n = File::open(path).unwrap().read(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap_or_default()
    }

    /// Writes `a` and `b` in turn `rounds` times while a reader reads in a loop; every line the
    /// reader sees must be a line of one of the two files, a comment or blank. Returns the reads.
    fn race(path: &Path, a: &[(String, Ipv4Addr)], b: &[(String, Ipv4Addr)], rounds: usize) -> u64 {
        let hosts = HostsBlock::new(path.to_path_buf());
        hosts.write(a).unwrap();
        let a_text = fs::read_to_string(path).unwrap();
        hosts.write(b).unwrap();
        let b_text = fs::read_to_string(path).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop) = (path.to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = read_once(&path);
                    assert!(text.starts_with(ORIGINAL), "a reader saw the user's lines damaged:\n{text}");
                    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
                        assert!(a_text.lines().chain(b_text.lines()).any(|l| l == line), "a reader saw a spliced line {line:?}:\n{text}");
                    }
                    reads += 1;
                }
                reads
            })
        };
        for _ in 0..rounds {
            hosts.write(a).unwrap();
            hosts.write(b).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    }

    #[test]
    fn writes_keep_the_inode_and_readers_never_see_a_spliced_line() {
        let (_scratch, path) = scratch("inplace");
        fs::write(&path, ORIGINAL).unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        let long: Vec<_> = (0..40).map(|i| e(&format!("service-{i}.long.internal"), [127, 255, 1, i])).collect();
        let short = [e("s", [127, 255, 0, 1])];
        let moved: Vec<_> = (0..40).map(|i| e(&format!("service-{i}.long.internal"), [127, 255, 2, 39 - i])).collect();
        assert!(race(&path, &long, &short, 200) > 0);
        assert!(race(&path, &long, &moved, 200) > 0);
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino, "the file must be changed in place");
        HostsBlock::new(path.clone()).remove().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
    }

    #[test]
    fn in_place_steps_end_in_the_new_content() {
        let (_scratch, path) = scratch("steps");
        let f = || OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for (old, new) in [
            ("aaaa\nbbbbbbbb\n", "aaaa\ncc\n"),
            ("aaaa\ncc\n", "aaaa\ncc\ndddd\n"),
            ("aaaa\ncc\ndddd\n", "aaaa\ncc\n"),
            ("1.2.3.4 h", "1.2.3.4 h\nx\n"),
            ("1.2.3.4 h\nx\n", "1.2.3.4 h"),
            ("\n\nab\n", "\n\nac\n\n"),
            ("x\n", ""),
            ("", "y"),
        ] {
            fs::write(&path, old).unwrap();
            write_in_place(&f(), old.as_bytes(), new.as_bytes()).unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), new, "from {old:?}");
        }
        assert_eq!(commented(b"ab\n\ncd\n"), b"#b\n##d\n");
    }
}
