//! `observe flows --follow` on a real terminal (tmux) against a real lab: the TUI
//! shows the lab's flows, Tab switches to the service map, `q` quits and the
//! terminal is restored. And on a terminal that never answers a query (a pty
//! under `script`), the TUI still opens.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
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

/// A pty whose other end only copies bytes (`script`, with nothing behind it
/// that answers the terminal's queries, as in some editors' shells): the TUI
/// opens there too, and `q` quits it. It used to ask for the cursor position
/// on start and exit after two seconds without an answer.
#[test]
fn the_tui_opens_on_a_terminal_that_never_answers() {
    let env = e2e::start(&Scenario::builtin_capture(), &[]);
    // A pty starts at 0 x 0, where the TUI draws nothing.
    let command = format!(
        "stty rows 45 cols 180 && exec {} flows --follow {}",
        e2e::observe_binary().display(),
        env.server_args(env.probe.addr).join(" ")
    );
    let mut script = e2e::KilledOnDrop(
        Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (bsdutils)"),
    );
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut out = script.0.stdout.take().unwrap();
    let copy = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            copy.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    // Drawn cell by cell, words apart: the key help is one run of text.
    while !text().contains("/ filter  space pause  enter detail  tab view  q quit") {
        if let Some(status) = script.0.try_wait().unwrap() {
            let mut err = String::new();
            script
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!(
                "the TUI exited ({status}) before its key help: {err}{}",
                text()
            );
        }
        let shown = text();
        assert!(
            Instant::now() < deadline,
            "no TUI key help within 15 s: {}",
            shown.escape_debug()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    script.0.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = script.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the TUI did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}
