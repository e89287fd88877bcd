//! `cargo xtask try`: the package on a throwaway Debian container, no VPS
//! needed. Installs the freshly built .deb, deploys the stand-in bot with a
//! dummy token, shows the service, and leaves the container running.

use crate::deps;
use crate::dist;
use crate::run::{self, Result};
use jarvis_test_support::container::Container;
use jarvis_test_support::roots::Suite;

pub fn try_demo() -> Result<()> {
    if !deps::is_root() {
        return Err("booting a container needs root: run it as root".into());
    }
    deps::apt(&["debootstrap", "systemd-container"])?;
    let built = dist::dist()?;
    println!("booting a Debian 12 container (first run: debootstrap, a few minutes) ...");
    let c = Container::boot(Suite::Bookworm);
    c.deploy_standin(&run::root());
    c.put(&built.deb, "/var/tmp/jarvis-supervisor.deb");
    let out = c.sh("apt-get install -y -q /var/tmp/jarvis-supervisor.deb 2>&1");
    println!("$ apt install ./jarvis-supervisor.deb\n{}", out.all());
    if out.status != 0 {
        return Err("apt install failed (above)".into());
    }
    let _ = c.sh("for i in $(seq 50); do systemctl is-active -q jarvis-supervisor && break; sleep 0.2; done");
    let status = c.sh("systemctl status --no-pager -n 0 jarvis-supervisor 2>&1");
    println!("$ systemctl status jarvis-supervisor\n{}", status.all());
    let journal = c.sh("journalctl -u jarvis-supervisor --no-pager -n 15 2>&1");
    println!("$ journalctl -u jarvis-supervisor -n 15\n{}", journal.all());
    let (pid, dir) = c.detach();
    println!("The container is running (init pid {pid}).");
    println!("  enter it:   sudo nsenter -t {pid} -a /bin/bash");
    println!(
        "  then try:   systemctl kill -s KILL jarvis-supervisor; sleep 5; systemctl status jarvis-supervisor"
    );
    println!("  stop it:    sudo nsenter -t {pid} -a systemctl poweroff");
    println!("  clean up:   sudo rm -rf {}", dir.display());
    Ok(())
}
