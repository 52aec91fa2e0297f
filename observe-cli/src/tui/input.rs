//! Keys → state changes, by [`Mode`]: the table and tabs in normal mode, the
//! filter bar's line editing, and the detail pane; `c` on the service map
//! switches between the map and its changes; `?` opens the key help outside
//! the bar. `q` (or Esc outside the bar, the pane and the help) and Ctrl-C
//! quit.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{App, Control, Mode, Tab};

impl App {
    /// Applies one terminal event; [`Control::Quit`] ends the loop.
    pub fn handle_event(&mut self, ev: &Event) -> Control {
        let Event::Key(key) = ev else {
            // A resize redraws; mouse and focus events are ignored.
            self.dirty = true;
            return Control::Continue;
        };
        if key.kind == KeyEventKind::Release {
            return Control::Continue;
        }
        self.dirty = true;
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Control::Quit;
        }
        if self.help {
            return self.help_key(key);
        }
        if key.code == KeyCode::Char('?') && self.mode != Mode::Filter {
            self.help = true;
            return Control::Continue;
        }
        match self.mode {
            Mode::Filter => {
                self.filter_key(key);
                Control::Continue
            }
            Mode::Detail => self.detail_key(key),
            Mode::Normal => self.normal_key(key),
        }
    }

    fn normal_key(&mut self, key: &KeyEvent) -> Control {
        let page = isize::from(i16::try_from(self.table_rows.get()).unwrap_or(i16::MAX))
            .saturating_sub(1)
            .max(1);
        match key.code {
            // Esc steps back out of the map's changes first, as it does out
            // of the detail, the help and the filter bar; then it quits.
            KeyCode::Esc if self.tab == Tab::ServiceMap && self.show_changes => {
                self.show_changes = false;
                self.list_scroll = 0;
            }
            KeyCode::Char('q') | KeyCode::Esc => return Control::Quit,
            KeyCode::Tab => self.switch_tab(1),
            KeyCode::BackTab => self.switch_tab(Tab::ALL.len() - 1),
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                // Ready for one more flag after the applied ones.
                self.filter.input = match self.filter.applied.text.as_str() {
                    "" => String::new(),
                    text => format!("{text} "),
                };
                self.filter.error = None;
            }
            KeyCode::Char(' ') => self.toggle_pause(),
            KeyCode::Char('c') if self.tab == Tab::ServiceMap => {
                self.show_changes = !self.show_changes;
                self.list_scroll = 0;
            }
            _ if self.tab != Tab::Flows => self.list_key(key.code),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-page),
            KeyCode::PageDown => self.move_selection(page),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.follow(),
            KeyCode::Enter => {
                if let Some(seq) = self.current_seq() {
                    self.detail = Some(seq);
                    self.detail_flow = self.shown().get(seq).cloned().map(Box::new);
                    self.detail_scroll = 0;
                    self.mode = Mode::Detail;
                }
            }
            _ => {}
        }
        Control::Continue
    }

    /// While the help is open only closing it and quitting do anything, so
    /// a key pressed to try it out changes nothing behind it.
    fn help_key(&mut self, key: &KeyEvent) -> Control {
        match key.code {
            KeyCode::Char('q') => return Control::Quit,
            KeyCode::Char('?') | KeyCode::Esc => {
                self.help = false;
                self.help_scroll = 0;
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.help_scroll = self.help_scroll.saturating_sub(1);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.help_scroll = self
                    .help_scroll
                    .saturating_add(1)
                    .min(self.help_max_scroll.get());
            }
            _ => {}
        }
        Control::Continue
    }

    fn switch_tab(&mut self, step: usize) {
        let n = Tab::ALL.len();
        self.tab = Tab::ALL[(self.tab.index() + step) % n];
        self.list_scroll = 0;
    }

    /// Scrolling on the service map, top talkers and changes, by rows, up
    /// to the last screenful as last drawn.
    fn list_key(&mut self, code: KeyCode) {
        let page = isize::try_from(self.list_page.get()).unwrap_or(isize::MAX);
        let max = self.list_max_scroll.get();
        let delta = match code {
            KeyCode::Up | KeyCode::Char('k') => -1,
            KeyCode::Down | KeyCode::Char('j') => 1,
            KeyCode::PageUp => -page,
            KeyCode::PageDown => page,
            KeyCode::Home | KeyCode::Char('g') => isize::MIN,
            KeyCode::End | KeyCode::Char('G') => isize::MAX,
            _ => 0,
        };
        // From what is shown: a list that shrank since may show less.
        let shown = self.list_scroll.min(max);
        self.list_scroll = shown.saturating_add_signed(delta).min(max);
    }

    fn filter_key(&mut self, key: &KeyEvent) {
        match key.code {
            KeyCode::Enter => {
                self.mode = if self.apply_filter() {
                    Mode::Normal
                } else {
                    Mode::Filter
                };
            }
            KeyCode::Esc => {
                self.filter.input = self.filter.applied.text.clone();
                self.filter.error = None;
                self.mode = Mode::Normal;
            }
            // An edit answers the error: it is said again at the next Enter
            // if the text still has it.
            KeyCode::Backspace => {
                self.filter.input.pop();
                self.filter.error = None;
            }
            // Readline's: Ctrl-U clears the line, Ctrl-W the word before the
            // cursor, Ctrl-H (what many terminals send for Ctrl-Backspace)
            // the character.
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.input.clear();
                self.filter.error = None;
            }
            KeyCode::Char('w') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                let kept = self.filter.input.trim_end().rfind(' ').map_or(0, |i| i + 1);
                self.filter.input.truncate(kept);
                self.filter.error = None;
            }
            KeyCode::Char('h') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.input.pop();
                self.filter.error = None;
            }
            // Other Ctrl and Alt keys are not text.
            KeyCode::Char(_)
                if key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {}
            KeyCode::Char(c) => {
                self.filter.input.push(c);
                self.filter.error = None;
            }
            _ => {}
        }
    }

    fn detail_key(&mut self, key: &KeyEvent) -> Control {
        match key.code {
            KeyCode::Char('q') => return Control::Quit,
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace => {
                self.mode = Mode::Normal;
                self.detail = None;
                self.detail_flow = None;
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.detail_scroll = self.detail_scroll.saturating_sub(1);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.detail_scroll = self
                    .detail_scroll
                    .saturating_add(1)
                    .min(self.detail_max_scroll.get());
            }
            KeyCode::PageUp => self.detail_scroll = self.detail_scroll.saturating_sub(10),
            KeyCode::PageDown => {
                self.detail_scroll = self
                    .detail_scroll
                    .saturating_add(10)
                    .min(self.detail_max_scroll.get());
            }
            _ => {}
        }
        Control::Continue
    }
}
