# %pre: the user must exist before the files land ($1: 1 = install, 2+ = upgrade).
# An existing jarvis user is reused unchanged.
getent group jarvis >/dev/null || groupadd --system jarvis
getent passwd jarvis >/dev/null \
    || useradd --system --gid jarvis --home-dir /home/jarvis --create-home --shell /bin/bash jarvis
exit 0
