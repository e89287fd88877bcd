//! Issue 15, item 5 and acceptance 3 (the ping): when the service gives up
//! (start limit hit), the heartbeat's /fail endpoint is pinged and the
//! on_failure command runs within 5 s, from systemd's OnFailure= unit and
//! from `jarvisctl run`, on both engines at once, and on systemd 257,
//! which also fires OnFailure= between restarts (alert must stay quiet
//! then). The HTTP server is the test's own, inside each container's
//! private network.

use std::time::{Duration, Instant};

use super::container::Container;
use super::roots::Suite;
use super::{on_suites, output_when, with_the_bot, CODE, UNIT};

const SERVER: &str = r#"
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2], "a") as f:
            f.write("%.3f %s\n" % (time.time(), self.path))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
const SECRET: &str = "check-uuid-5a0c";

fn gave_up(c: &Container, suite: Suite) -> bool {
    if suite.has_systemd() {
        c.prop(UNIT, "ActiveState") == "failed"
    } else {
        c.sh("cat /run/jarvis-supervisor-run/state.json")
            .stdout
            .contains("\"start-limit-hit\"")
    }
}

fn scenario(suite: Suite) {
    let name = suite.name();
    let c = with_the_bot(suite);
    c.write(
        "/etc/systemd/system/jarvis-supervisor.service.d/50-test.conf",
        "[Unit]\nStartLimitBurst=3\n",
    );
    c.write("/var/tmp/srv.py", SERVER);
    c.ok("setsid nohup python3 /var/tmp/srv.py 18081 /var/tmp/pings.log </dev/null >/dev/null 2>&1 &");
    c.wait_for("the test's HTTP server", Duration::from_secs(10), |c| {
        c.sh("python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 18081), 1)'")
            .status
            == 0
    });
    c.ok("mkdir -p /etc/jarvis-supervisor");
    c.write(
        "/etc/jarvis-supervisor/heartbeat.conf",
        &format!(
            "url = http://127.0.0.1:18081/{SECRET}\non_failure = echo \"$JARVIS_ALERT_REASON\" > /srv/alert.txt; echo paged ops about http://127.0.0.1:18081/{SECRET}\n"
        ),
    );
    c.ok("chmod 640 /etc/jarvis-supervisor/heartbeat.conf");
    // From now on the bot fails at each start.
    c.ok(&format!("echo STANDIN_MODE=exit1 >> {CODE}/.env"));
    // The restart itself reports the failed start; the loop goes on.
    if suite.has_systemd() {
        c.ok("systemctl daemon-reload");
        c.sh("systemctl restart --no-block jarvis-supervisor");
    } else {
        c.sh("service jarvis-supervisor restart");
    }

    let t0 = Instant::now();
    while !gave_up(&c, suite) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{name}: no start limit after 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed_at = Instant::now();
    let fail_ping = format!("/{SECRET}/fail");
    loop {
        let pings = c.sh("cat /var/tmp/pings.log").stdout;
        if pings.contains(&fail_ping) && c.sh("test -s /srv/alert.txt").status == 0 {
            break;
        }
        assert!(
            failed_at.elapsed() < Duration::from_secs(5),
            "{name}: no fail ping and on_failure within 5 s of the give-up: pings {pings:?}\n{}",
            c.sh("journalctl -u jarvis-supervisor-alert --no-pager 2>&1; tail -n 20 /run/jarvis-supervisor-run/engine.log 2>&1").all()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = failed_at.elapsed().as_secs_f64();
    let reason = c.ok("cat /srv/alert.txt");
    assert!(
        reason.contains("failed for good") || reason.contains("gave up"),
        "{name}: on_failure got no reason: {reason}"
    );
    // One alert for one give-up (an absence: a grace period for a second
    // one), and the check's secret path never printed.
    std::thread::sleep(Duration::from_secs(2));
    let pings = c.ok("cat /var/tmp/pings.log");
    assert_eq!(pings.matches(&fail_ping).count(), 1, "{name}: {pings}");
    // The alert's lines reach the journal at journald's pace: waited for.
    let logs = output_when(
        &c,
        "journalctl --no-pager -o cat 2>&1; cat /run/jarvis-supervisor-run/engine.log 2>&1",
        Duration::from_secs(30),
        |l| {
            l.contains("pinged http://127.0.0.1:18081/")
                && l.contains("alert: on_failure: paged ops about ****")
        },
    );
    assert!(
        logs.contains("pinged http://127.0.0.1:18081/"),
        "{name}: the alert did not say what it did"
    );
    // What on_failure printed is there, the URL in it masked.
    assert!(
        logs.contains("alert: on_failure: paged ops about ****"),
        "{name}: on_failure's output is not in the log"
    );
    assert!(
        !logs.contains(SECRET),
        "{name}: the check's secret path was printed"
    );
    println!("figures: {name}: fail ping and on_failure {took:.1} s after the give-up was seen");
}

pub fn both_engines() {
    on_suites(&[Suite::Bookworm, Suite::Trixie, Suite::Sysvinit], scenario);
}
