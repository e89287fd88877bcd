# %pre: the user must exist before the files land ($1: 1 = install, 2+ = upgrade).
# An existing jarvis user is reused unchanged. %sysusers_create_compat written
# out (cargo-generate-rpm does not expand macros): the sysusers.d file is not
# on disk yet, so its line comes on stdin.
if command -v systemd-sysusers >/dev/null 2>&1; then
    # >>> sysusers: the line of packaging/sysusers/jarvis-supervisor.conf
    systemd-sysusers --replace=/usr/lib/sysusers.d/jarvis-supervisor.conf - <<'SYSUSERS' || exit 1
u jarvis - "Jarvis bot supervisor" /home/jarvis /usr/sbin/nologin
SYSUSERS
    # <<< sysusers
else
    getent group jarvis >/dev/null || groupadd --system jarvis
    getent passwd jarvis >/dev/null \
        || useradd --system --gid jarvis --home-dir /home/jarvis --create-home --shell /usr/sbin/nologin jarvis
fi
exit 0
