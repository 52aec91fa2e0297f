//! Entering and leaving the full-screen terminal: raw mode and the alternate
//! screen on the way in; on the way out, also from a panic hook (before the
//! panic message prints) and from `Drop` (on early returns).

use std::io::{self, Stdout, stdout};
use std::sync::Once;

use crossterm::cursor::Show;
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal in TUI mode; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Raw mode, alternate screen, hidden cursor; restored when the guard drops.
pub fn enter() -> io::Result<TerminalGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    let guard = |e: io::Error| {
        let _ = restore();
        e
    };
    // Cleared here rather than with `Terminal::clear`, which first asks the
    // terminal where its cursor is: one that never answers (a pty under
    // `script`, some editors' shells) would fail the TUI after two seconds.
    execute!(stdout(), EnterAlternateScreen, Clear(ClearType::All)).map_err(guard)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout())).map_err(guard)?;
    terminal.hide_cursor().map_err(guard)?;
    Ok(TerminalGuard { terminal })
}

/// Leaves raw mode and the alternate screen and shows the cursor. Harmless
/// when the terminal is not in TUI mode.
pub fn restore() -> io::Result<()> {
    let raw = disable_raw_mode();
    execute!(stdout(), LeaveAlternateScreen, Show)?;
    raw
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore();
    }
}

/// Restores the terminal before the default hook prints a panic, so the
/// message lands on the normal screen with sane line endings.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}
