//! `observe flows --follow` on a real terminal (tmux) against a real lab: the TUI
//! shows the lab's flows, Tab switches to the service map, `q` quits and the
//! terminal is restored.

use std::process::Command;
use std::time::{Duration, Instant};

use observe_lab::{Scenario, run_traffic_once};

struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(
            Command::new("tmux")
                .args(["send-keys", "-t", &self.0, keys])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits (bounded) until the screen satisfies `pred`; returns the screen.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_opens_the_tui_which_quits_cleanly() {
    let scenario = Scenario::builtin_capture();
    let env = e2e::start(&scenario, &[]);
    let stty = env.state_dir.join("stty-after.txt");
    let script = format!(
        "{} flows --follow --to-port 8080 {}; stty -a > {}; echo TUI-EXITED; sleep 60",
        e2e::observe_binary().display(),
        env.server_args(env.probe.addr).join(" "),
        stty.display()
    );
    let tmux = Tmux(format!("observe-tui-{}", std::process::id()));
    let ok = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &tmux.0,
            "-x",
            "180",
            "-y",
            "45",
            "bash",
            "-c",
            &script,
        ])
        .status()
        .expect("tmux is installed (scripts/setup.sh)");
    assert!(ok.success());
    tmux.wait_for("the TUI header", |s| {
        s.contains("Flows │ Service map │ Top talkers")
    });

    let report = tokio::task::block_in_place(|| run_traffic_once(&env.lab, &scenario)).unwrap();
    assert!(report.all_as_expected(), "{report}");
    let screen = tmux.wait_for("the lab's flows in the table", |s| {
        s.lines().any(|l| {
            l.contains("default/frontend")
                && l.contains("default/api:8080")
                && l.contains("FORWARDED")
        })
    });
    assert!(screen.contains("nodes: node1"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("TIME") && l.contains("VERDICT") && l.contains("SUMMARY")),
        "{screen}"
    );

    tmux.keys("Tab");
    let screen = tmux.wait_for("the service map", |s| s.contains("SOURCE -> DESTINATION"));
    let edge = screen
        .lines()
        .find(|l| l.starts_with("default/frontend -> default/api"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(edge.contains("TCP/8080"), "{edge}");

    tmux.keys("q");
    tmux.wait_for("the TUI to exit", |s| s.contains("TUI-EXITED"));
    let modes = std::fs::read_to_string(&stty).unwrap();
    let words: Vec<&str> = modes.split_whitespace().collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "terminal not restored: {modes}"
    );
}
