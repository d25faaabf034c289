//! Logging, host-agnostic: the core writes through [`Log`]; the host adapter forwards to the
//! proxy's log, and tests collect lines to assert on them (secrets never appear).

/// Log levels, as proxy-wasm numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Where the core writes its log lines.
pub trait Log {
    fn log(&self, level: Level, message: &str);
}

/// A log that keeps every line, for tests.
#[derive(Debug, Default)]
pub struct Lines(pub std::cell::RefCell<Vec<(Level, String)>>);

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
