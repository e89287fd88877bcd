//! Quoting for the host's shell and for rsync's `-e`.

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// rsync's `-e`: the ssh command line, each word quoted for rsync's own
/// splitting.
pub fn rsync_shell(ssh_args: &[String]) -> String {
    std::iter::once("ssh".to_string())
        .chain(ssh_args.iter().map(|a| sh_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/home/jarvis/Jarvis"), "/home/jarvis/Jarvis");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(
            rsync_shell(&["-o".into(), "UserKnownHostsFile=/my dir/kh".into()]),
            "ssh -o 'UserKnownHostsFile=/my dir/kh'"
        );
    }
}
