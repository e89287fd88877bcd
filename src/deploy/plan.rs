//! The pure planning of a deploy: rsync's arguments and which deploys
//! the history keeps.

use super::ids::{order, valid_id};
use super::session::Compare;

/// rsync's `[user@]host:path`; an IPv6 address goes in brackets.
pub fn rsync_dest(destination: &str, path: &str) -> String {
    let (user, host) = match destination.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), destination),
    };
    if host.contains(':') {
        format!("{user}[{host}]:{path}")
    } else {
        format!("{user}{host}:{path}")
    }
}

/// `rsync` arguments that copy the files listed in `files_from` (a local
/// file, one path a line) from `local` into the deploy's store on the host.
/// Unchanged files are hard-linked from the previous store (`link_dest`),
/// so only changes cross the wire.
pub fn push_args(
    local: &str,
    remote_dest: &str,
    shell: &str,
    files_from: &str,
    link_dest: Option<&str>,
    compare: Compare,
    bwlimit: Option<u32>,
) -> Vec<String> {
    let mut a: Vec<String> = ["-lpt", "--chmod=o-rwx"].map(String::from).into();
    if compare == Compare::Content {
        a.push("--checksum".into());
    }
    a.push(format!("--files-from={files_from}"));
    if let Some(d) = link_dest {
        a.push(format!("--link-dest={d}"));
    }
    if let Some(kb) = bwlimit {
        a.push(format!("--bwlimit={kb}"));
    }
    a.extend(["-e".into(), shell.to_string()]);
    a.push(format!("{}/", local.trim_end_matches('/')));
    a.push(format!("{}/", remote_dest.trim_end_matches('/')));
    a
}

/// The ids to delete so that only the newest `keep` remain (never fewer
/// than one).
pub fn prune(ids: &[String], keep: usize) -> Vec<String> {
    let mut sorted: Vec<&String> = ids.iter().filter(|i| valid_id(i)).collect();
    sorted.sort_by_key(|i| order(i));
    let keep = keep.max(1);
    let n = sorted.len().saturating_sub(keep);
    sorted[..n].iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_sends_the_listed_files_into_the_store() {
        let a = push_args(
            "/src/Jarvis/",
            "root@a:/var/lib/jarvis-supervisor/deploys/X/code",
            "ssh -p 22",
            "/tmp/list",
            Some("/var/lib/jarvis-supervisor/deploys/W/code"),
            Compare::SizeAndTime,
            None,
        );
        assert!(a.contains(&"--files-from=/tmp/list".to_string()), "{a:?}");
        assert!(a.contains(&"--link-dest=/var/lib/jarvis-supervisor/deploys/W/code".to_string()));
        assert!(
            !a.contains(&"--checksum".to_string()),
            "the quick check reads only what changed: {a:?}"
        );
        assert!(
            !a.iter().any(|x| x.contains("delete")),
            "the store is new: nothing to delete"
        );
        assert_eq!(
            &a[a.len() - 4..],
            [
                "-e",
                "ssh -p 22",
                "/src/Jarvis/",
                "root@a:/var/lib/jarvis-supervisor/deploys/X/code/"
            ]
        );
        let b = push_args("/src", "/x", "ssh", "/l", None, Compare::Content, Some(100));
        assert!(b.contains(&"--bwlimit=100".to_string()) && !b.iter().any(|x| x.starts_with("--link-dest")));
        assert!(b.contains(&"--checksum".to_string()), "{b:?}");
    }

    #[test]
    fn the_push_sends_files_whose_names_read_like_comments() {
        // rsync's --files-from skips lines that start with # or ;.
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        let paths: Vec<String> = ["#a.py", ";b.py", "sub/#c.py", "d.py"].map(String::from).into();
        for p in &paths {
            let f = src.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, p).unwrap();
        }
        std::fs::create_dir_all(&dst).unwrap();
        let list = super::super::settings::files_from(&paths).unwrap();
        let args = push_args(
            &src.to_string_lossy(),
            &dst.to_string_lossy(),
            "ssh",
            &list.path().to_string_lossy(),
            None,
            Compare::SizeAndTime,
            None,
        );
        let out = std::process::Command::new("rsync")
            .args(&args)
            .output()
            .expect("rsync");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for p in &paths {
            assert_eq!(
                std::fs::read_to_string(dst.join(p)).ok().as_deref(),
                Some(p.as_str()),
                "{p} not sent"
            );
        }
    }

    #[test]
    fn rsync_destinations() {
        assert_eq!(rsync_dest("root@vps1", "/x"), "root@vps1:/x");
        assert_eq!(rsync_dest("vps1", "/x"), "vps1:/x");
        assert_eq!(rsync_dest("me@::1", "/x"), "me@[::1]:/x");
    }

    #[test]
    fn prune_keeps_the_newest() {
        let ids: Vec<String> = [
            "20260103T000000Z",
            "20260101T000000Z",
            "20260103T000000Z-2",
            "20260103T000000Z-10",
            "junk",
            "20260102T000000Z",
        ]
        .map(String::from)
        .into();
        assert_eq!(prune(&ids, 3), ["20260101T000000Z", "20260102T000000Z"]);
        assert_eq!(
            prune(&ids, 2),
            ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]
        );
        assert_eq!(prune(&ids, 10), Vec::<String>::new());
        assert_eq!(prune(&ids, 0).len(), 4, "keeps at least one");
    }
}
