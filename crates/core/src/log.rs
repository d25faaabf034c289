//! Logging, host-agnostic: the core writes through [`Log`]; the host adapter forwards to the
//! proxy's log, and tests collect lines to assert on them (secrets never appear).

pub use crate::ports::{Level, Log};

/// A log that keeps every line, for tests. Its clones share their lines: a test keeps one and
/// hands another to the runtime it logs for.
#[derive(Debug, Default, Clone)]
pub struct Lines(pub std::rc::Rc<std::cell::RefCell<Vec<(Level, String)>>>);

impl Log for Lines {
    fn log(&self, level: Level, message: &str) {
        self.0.borrow_mut().push((level, message.to_string()));
    }
}

impl Lines {
    pub fn text(&self) -> String {
        self.0
            .borrow()
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
